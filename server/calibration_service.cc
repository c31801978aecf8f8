#include "server/calibration_service.h"

#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/unknown_field_set.h"
#include "server/call_log.h"
#include "server/grpc_status.h"
#include "src/status_macros.h"

namespace calib {
namespace {

absl::Status CancelledStatus() { return absl::CancelledError("the call was cancelled"); }

// What the client saw, as far as the server knows: a call that gRPC cancelled or failed
// (the client went away, a deadline, a message over the size limit) ignored our Finish.
// The context is valid until OnDone returns, and by then its cancellation is settled.
grpc::StatusCode LoggedCode(const grpc::CallbackServerContext& context,
                            grpc::StatusCode finished_with) {
  return context.IsCancelled() ? grpc::StatusCode::CANCELLED : finished_with;
}

// Runs one step of a call's work. The engine reports its errors as statuses; this only
// keeps an allocation failure or a bug from taking every other call down with it.
template <typename Step>
absl::Status RunStep(Step step) {
  try {
    return step();
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("the server ran out of memory for this call");
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("evaluation failed: ", e.what()));
  }
}

// Evaluate: the whole request is one batch. The reactor lives from the call's start to
// OnDone; its only work is the task it enqueues, which ends with Finish.
class EvaluateReactor final : public grpc::ServerUnaryReactor {
 public:
  EvaluateReactor(grpc::CallbackServerContext* context,
                  const v1::EvaluateRequest* request, v1::EvaluateResponse* response,
                  const EvaluationLimits& limits, tbb::task_arena* arena)
      : context_(context),
        request_(request),
        response_(response),
        limits_(limits),
        log_("Evaluate", context->peer()) {
    log_.AddBytes(request->ByteSizeLong());
    arena->enqueue([this] { End(RunStep([this] { return Run(); })); });
  }

  void OnDone() override {
    log_.Write(LoggedCode(*context_, code_));
    delete this;
  }

 private:
  absl::Status Run() {
    if (context_->IsCancelled()) return CancelledStatus();
    if (!request_->has_config()) {
      return absl::InvalidArgumentError(
          "config is missing: Evaluate needs a config with num_classes and a batch");
    }
    CALIB_ASSIGN_OR_RETURN(std::unique_ptr<LimitedEvaluator> evaluator,
                           LimitedEvaluator::Create(request_->config(), limits_));
    CALIB_RETURN_IF_ERROR(evaluator->Add(request_->batch()));
    if (context_->IsCancelled()) return CancelledStatus();
    CALIB_ASSIGN_OR_RETURN(*response_->mutable_report(), evaluator->Finish());
    log_.SetSamples(response_->report().metrics().num_samples());
    return absl::OkStatus();
  }

  // The last touch of `this` outside OnDone.
  void End(const absl::Status& status) {
    grpc::Status result = ToGrpcStatus(status);
    code_ = result.error_code();
    Finish(std::move(result));
  }

  grpc::CallbackServerContext* const context_;
  const v1::EvaluateRequest* const request_;
  v1::EvaluateResponse* const response_;
  const EvaluationLimits limits_;
  CallLog log_;
  grpc::StatusCode code_ = grpc::StatusCode::UNKNOWN;
};

// EvaluateStream: gRPC reads message k+1 (and parses it, on its own thread) while a task
// on the arena consumes message k, so the wire and the arithmetic overlap. Three
// messages rotate: `incoming_` (being read), `next_` (read, waiting) and `work_` (being
// consumed). One read is outstanding at most, and only while `next_` is free, so a
// fast client is held back by flow control rather than by the server's memory; one task
// runs at most, so the Evaluator is used by one thread at a time, each task
// happening-after the previous one through mutex_.
class EvaluateStreamReactor final
    : public grpc::ServerReadReactor<v1::EvaluateStreamRequest> {
 public:
  EvaluateStreamReactor(grpc::CallbackServerContext* context,
                        v1::EvaluateStreamResponse* response,
                        const EvaluationLimits& limits, tbb::task_arena* arena)
      : context_(context),
        response_(response),
        limits_(limits),
        arena_(arena),
        log_("EvaluateStream", context->peer(), CallLog::Kind::kClientStream) {
    // Tells the client at once that the stream was taken (WaitForInitialMetadata), so
    // it knows a shutdown that starts later will let this stream finish.
    StartSendInitialMetadata();
    std::lock_guard<std::mutex> lock(mutex_);
    Pump();
  }

  void OnReadDone(bool ok) override {
    std::lock_guard<std::mutex> lock(mutex_);
    reading_ = false;
    if (finished_) return;
    if (ok) {
      ++received_;
      log_.AddMessage(incoming_.ByteSizeLong());
      incoming_.Swap(&next_);
      has_next_ = true;
    } else {
      // The client half-closed, or the call is broken (then Report sees it cancelled),
      // or a message came that does not parse: taking that for a half-close would report
      // on the rows before it as if they were all.
      half_closed_ = true;
      unparsable_ = !Unread(incoming_);
    }
    Pump();
  }

  void OnDone() override {
    log_.Write(LoggedCode(*context_, code_));
    delete this;
  }

 private:
  // Starts what can start: the next task, and the next read. Called with mutex_ held.
  void Pump() {
    if (!computing_) {
      if (has_next_) {
        next_.Swap(&work_);
        has_next_ = false;
        computing_ = true;
        arena_->enqueue([this] { Consumed(RunStep([this] { return Consume(); })); });
      } else if (half_closed_ && unparsable_) {
        // The messages before it were consumed without error.
        computing_ = true;
        arena_->enqueue([this, message = received_ + 1] {
          End(absl::InvalidArgumentError(absl::StrCat(
              "message ", message,
              " of the stream does not parse as a calib.v1.EvaluateStreamRequest")));
        });
      } else if (half_closed_) {
        computing_ = true;
        arena_->enqueue([this] { End(RunStep([this] { return Report(); })); });
      }
    }
    if (!reading_ && !half_closed_ && !has_next_) {
      reading_ = true;
      MarkUnread(&incoming_);
      StartRead(&incoming_);
    }
  }

  // gRPC ends a read with ok = false both when the client half-closed and when a message
  // came whose bytes do not parse. Only the latter parses into the message, which clears
  // it first; so a mark left in it before the read tells the two apart.
  static constexpr int kUnreadMark = 536870911;  // the largest field number
  static void MarkUnread(v1::EvaluateStreamRequest* request) {
    request->Clear();
    request->GetReflection()->MutableUnknownFields(request)->AddVarint(kUnreadMark, 1);
  }
  static bool Unread(const v1::EvaluateStreamRequest& request) {
    const google::protobuf::UnknownFieldSet& fields =
        request.GetReflection()->GetUnknownFields(request);
    return fields.field_count() == 1 && fields.field(0).number() == kUnreadMark;
  }

  void Consumed(const absl::Status& status) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      computing_ = false;
      if (status.ok()) {
        Pump();
        return;
      }
      // A read still outstanding ends with the call, and OnReadDone ignores it.
      finished_ = true;
    }
    End(status);
  }

  absl::Status Consume() {
    ++consumed_;
    if (context_->IsCancelled()) return CancelledStatus();
    switch (work_.kind_case()) {
      case v1::EvaluateStreamRequest::kConfig: {
        if (evaluator_ != nullptr) {
          return absl::FailedPreconditionError(
              absl::StrCat("message ", consumed_,
                           " is a second config: a stream has one config, first"));
        }
        CALIB_ASSIGN_OR_RETURN(evaluator_,
                               LimitedEvaluator::Create(work_.config(), limits_));
        return absl::OkStatus();
      }
      case v1::EvaluateStreamRequest::kBatch:
        if (evaluator_ == nullptr) {
          return absl::FailedPreconditionError(
              "the first message of a stream must be the config, not a batch");
        }
        return evaluator_->Add(work_.batch());
      case v1::EvaluateStreamRequest::KIND_NOT_SET:
        break;
    }
    if (evaluator_ == nullptr) {
      return absl::FailedPreconditionError(
          "the first message of a stream must be the config; it set neither config nor "
          "batch");
    }
    return absl::InvalidArgumentError(
        absl::StrCat("message ", consumed_, " sets neither config nor batch"));
  }

  absl::Status Report() {
    if (context_->IsCancelled()) return CancelledStatus();
    if (evaluator_ == nullptr) {
      return absl::FailedPreconditionError(
          "the stream ended without a config: its first message must be the config");
    }
    CALIB_ASSIGN_OR_RETURN(*response_->mutable_report(), evaluator_->Finish());
    log_.SetSamples(response_->report().metrics().num_samples());
    return absl::OkStatus();
  }

  // The last touch of `this` outside OnDone.
  void End(const absl::Status& status) {
    grpc::Status result = ToGrpcStatus(status);
    code_ = result.error_code();
    Finish(std::move(result));
  }

  grpc::CallbackServerContext* const context_;
  v1::EvaluateStreamResponse* const response_;
  const EvaluationLimits limits_;
  tbb::task_arena* const arena_;
  CallLog log_;

  std::mutex mutex_;
  v1::EvaluateStreamRequest incoming_;  // gRPC's while reading_
  v1::EvaluateStreamRequest next_;      // guarded by mutex_
  bool reading_ = false;                // guarded by mutex_
  bool has_next_ = false;               // guarded by mutex_
  bool half_closed_ = false;            // guarded by mutex_
  bool unparsable_ = false;             // guarded by mutex_: ended by a bad message
  uint64_t received_ = 0;               // guarded by mutex_
  bool computing_ = false;              // guarded by mutex_
  bool finished_ = false;               // guarded by mutex_

  // The running task's.
  v1::EvaluateStreamRequest work_;
  uint64_t consumed_ = 0;
  std::unique_ptr<LimitedEvaluator> evaluator_;
  grpc::StatusCode code_ = grpc::StatusCode::UNKNOWN;
};

}  // namespace

grpc::ServerUnaryReactor* CalibrationServiceImpl::Evaluate(
    grpc::CallbackServerContext* context, const v1::EvaluateRequest* request,
    v1::EvaluateResponse* response) {
  return new EvaluateReactor(context, request, response, limits_, arena_);
}

grpc::ServerReadReactor<v1::EvaluateStreamRequest>*
CalibrationServiceImpl::EvaluateStream(grpc::CallbackServerContext* context,
                                       v1::EvaluateStreamResponse* response) {
  return new EvaluateStreamReactor(context, response, limits_, arena_);
}

grpc::ServerUnaryReactor* CalibrationServiceImpl::GetServerInfo(
    grpc::CallbackServerContext* context, const v1::GetServerInfoRequest* /*request*/,
    v1::GetServerInfoResponse* response) {
  CallLog log("GetServerInfo", context->peer());
  response->set_version(CALIB_VERSION);
  response->set_max_message_bytes(max_message_bytes_);
  response->set_max_rows(limits_.max_rows);
  response->set_max_classes(limits_.max_classes);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  log.Write(grpc::StatusCode::OK);
  return reactor;
}

}  // namespace calib
