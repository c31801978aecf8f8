// CalibdProcess: a real calibd, started by a test on 127.0.0.1:0 and signalled by PID.
// Start() waits for "calibd listening on HOST:PORT" on its stdout and keeps the port;
// its stderr (the call log) goes to a temporary file that ReadStderr() reads back.
// Not thread-safe: one test thread owns it. The destructor kills a calibd still running.
#ifndef CALIB_TESTS_SERVER_TEST_UTIL_H_
#define CALIB_TESTS_SERVER_TEST_UTIL_H_

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace calib::testing {

class CalibdProcess {
 public:
  // `flags` come after --listen 127.0.0.1:0. Returns null (and says why on stderr) when
  // calibd does not start listening within 20 s.
  static std::unique_ptr<CalibdProcess> Start(const std::vector<std::string>& flags) {
    const char* bin = std::getenv("CALIBD_BIN");
    if (bin == nullptr) {
      std::fprintf(stderr, "CALIBD_BIN is not set\n");
      return nullptr;
    }
    std::unique_ptr<CalibdProcess> p(new CalibdProcess);
    char path[] = "/tmp/calibd_stderr_XXXXXX";
    const int err_fd = mkostemp(path, O_CLOEXEC);
    if (err_fd < 0) return nullptr;
    p->stderr_path_ = path;
    int out[2];
    if (pipe2(out, O_CLOEXEC) != 0) return nullptr;

    std::vector<std::string> args = {bin, "--listen", "127.0.0.1:0"};
    args.insert(args.end(), flags.begin(), flags.end());
    // Built before fork: the child of a threaded process may only make async-signal-safe
    // calls until exec.
    std::vector<char*> argv = Argv(args);
    p->pid_ = fork();
    if (p->pid_ == 0) {
      dup2(out[1], STDOUT_FILENO);
      dup2(err_fd, STDERR_FILENO);
      execv(bin, argv.data());
      _exit(127);
    }
    close(out[1]);
    close(err_fd);
    p->stdout_fd_ = out[0];
    if (p->pid_ < 0) return nullptr;

    std::string line;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (line.find('\n') == std::string::npos) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      pollfd pfd{p->stdout_fd_, POLLIN, 0};
      if (left.count() <= 0 || poll(&pfd, 1, static_cast<int>(left.count())) <= 0) break;
      char buf[256];
      const ssize_t n = read(p->stdout_fd_, buf, sizeof(buf));
      if (n <= 0) break;
      line.append(buf, static_cast<size_t>(n));
    }
    const std::string prefix = "calibd listening on ";
    if (line.rfind(prefix, 0) != 0 || line.find('\n') == std::string::npos) {
      std::fprintf(stderr, "calibd did not start: stdout '%s', stderr '%s'\n",
                   line.c_str(), p->ReadStderr().c_str());
      return nullptr;
    }
    line.resize(line.find('\n'));
    p->port_ = std::atoi(line.substr(line.rfind(':') + 1).c_str());
    if (p->port_ <= 0) return nullptr;
    return p;
  }

  // Runs calibd with `args` (nothing added) to its end; returns its exit status and
  // fills `err` with what it wrote on stderr. -1 when it did not exit normally.
  static int RunToExit(const std::vector<std::string>& args, std::string* err) {
    const char* bin = std::getenv("CALIBD_BIN");
    if (bin == nullptr) return -1;
    char path[] = "/tmp/calibd_stderr_XXXXXX";
    const int err_fd = mkostemp(path, O_CLOEXEC);
    if (err_fd < 0) return -1;
    const int null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    std::vector<std::string> all = {bin};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv = Argv(all);
    const pid_t pid = fork();
    if (pid == 0) {
      dup2(err_fd, STDERR_FILENO);
      dup2(null_fd, STDOUT_FILENO);
      execv(bin, argv.data());
      _exit(127);
    }
    close(err_fd);
    close(null_fd);
    int status = 0;
    const bool exited = pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status);
    *err = ReadFile(path);
    unlink(path);
    return exited ? WEXITSTATUS(status) : -1;
  }

  ~CalibdProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (stdout_fd_ >= 0) close(stdout_fd_);
    if (!stderr_path_.empty()) unlink(stderr_path_.c_str());
  }

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  std::string ReadStderr() const { return ReadFile(stderr_path_); }

  void Signal(int signal) const { kill(pid_, signal); }

  // Waits up to `timeout` for calibd to exit. Returns its exit status, or nullopt when
  // it was killed by a signal or still ran (it is then killed).
  std::optional<int> WaitForExit(std::chrono::seconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    int status = 0;
    while (waitpid(pid_, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        kill(pid_, SIGKILL);
        waitpid(pid_, &status, 0);
        pid_ = -1;
        return std::nullopt;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    pid_ = -1;
    if (!WIFEXITED(status)) return std::nullopt;
    return WEXITSTATUS(status);
  }

  // Polls stderr for up to `timeout` until it contains `text`.
  bool WaitForStderr(const std::string& text, std::chrono::seconds timeout) const {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (ReadStderr().find(text) == std::string::npos) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return true;
  }

 private:
  CalibdProcess() = default;

  static std::vector<char*> Argv(std::vector<std::string>& args) {
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    return argv;
  }

  static std::string ReadFile(const std::string& path) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }

  pid_t pid_ = -1;
  int port_ = 0;
  int stdout_fd_ = -1;
  std::string stderr_path_;
};

}  // namespace calib::testing

#endif  // CALIB_TESTS_SERVER_TEST_UTIL_H_
