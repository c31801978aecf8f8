// CallLog: the record of one call, written as one logfmt line on stderr when the call
// ends, e.g.
//   calibd call method=Evaluate peer=ipv4:127.0.0.1:5555 samples=1000 bytes=40000
//   status=OK seconds=0.012
// A call whose client streams also logs messages=N after bytes: every message received,
// the config included.
// A CallLog belongs to one call and is touched by one thread at a time (the call's
// reactor hands it along with its work); Write is safe from any number of calls at once.
#ifndef CALIB_SERVER_CALL_LOG_H_
#define CALIB_SERVER_CALL_LOG_H_

#include <grpcpp/support/status.h>

#include <chrono>
#include <cstdint>
#include <string>

namespace calib {

class CallLog {
 public:
  enum class Kind { kUnary, kClientStream };

  // Starts the clock.
  CallLog(std::string method, std::string peer, Kind kind = Kind::kUnary);

  void AddBytes(uint64_t bytes) { bytes_ += bytes; }
  // One message of a kClientStream call, of `bytes` bytes.
  void AddMessage(uint64_t bytes) {
    ++messages_;
    bytes_ += bytes;
  }
  void SetSamples(uint64_t samples) { samples_ = samples; }
  // Seconds since construction.
  double Seconds() const;
  // Writes the line with the seconds since construction.
  void Write(grpc::StatusCode code) const;

 private:
  const std::string method_;
  const std::string peer_;
  const Kind kind_;
  const std::chrono::steady_clock::time_point start_;
  uint64_t bytes_ = 0;
  uint64_t samples_ = 0;
  uint64_t messages_ = 0;
};

}  // namespace calib

#endif  // CALIB_SERVER_CALL_LOG_H_
