#include "server/calibration_service.h"

#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/unknown_field_set.h"
#include "oneapi/tbb/parallel_for.h"
#include "oneapi/tbb/task_group.h"
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

// What every reactor shares: the service's limits and counters.
struct Shared {
  const EvaluationLimits& limits;
  tbb::task_arena* arena;
  Admission* admission;
  ServerMetrics* metrics;
};

// Runs one step of a call's work under the call's `context`, so that cancelling it
// cancels the engine's parallel work inside; a step of a cancelled call does not run.
// The engine reports its errors as statuses; the catch only keeps an allocation failure
// or a bug from taking every other call down with it.
template <typename Step>
absl::Status RunStep(tbb::task_group_context& context, Step step) {
  absl::Status status = CancelledStatus();
  tbb::parallel_for(
      0, 1,
      [&](int) {
        try {
          status = step();
        } catch (const std::bad_alloc&) {
          status =
              absl::ResourceExhaustedError("the server ran out of memory for this call");
        } catch (const std::exception& e) {
          status = absl::InternalError(absl::StrCat("evaluation failed: ", e.what()));
        }
      },
      context);
  return status;
}

// The end of an Evaluate or EvaluateStream call, in the log and the metrics.
void Record(const std::string& method, const CallLog& log, grpc::StatusCode code,
            ServerMetrics* metrics) {
  log.Write(code);
  metrics->CallEnded(method, code);
  metrics->EvaluationEnded(method, log.Seconds());
}

// Evaluate: the whole request is one batch. The reactor lives from the call's start to
// OnDone; its only work is the task it enqueues, which ends with Finish.
class EvaluateReactor final : public grpc::ServerUnaryReactor {
 public:
  EvaluateReactor(grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
                  grpc::ByteBuffer* response, const Shared& shared)
      : context_(context),
        response_(response),
        shared_(shared),
        log_(kMethod, context->peer()) {
    const uint64_t bytes = request->Length();
    log_.AddBytes(bytes);
    shared_.metrics->Received(kMethod, bytes);
    // Parsed here, on gRPC's thread, as gRPC parses a typed request, and in place:
    // Deserialize frees the wire bytes (a copy of the buffer would keep them alive,
    // outside the memory budget, until the call ends). gRPC's own buffer is not const.
    if (!grpc::SerializationTraits<v1::EvaluateRequest>::Deserialize(
             const_cast<grpc::ByteBuffer*>(request), &request_)
             .ok()) {
      End(absl::InvalidArgumentError(
          "the request does not parse as a calib.v1.EvaluateRequest"));
      return;
    }
    shared_.arena->enqueue([this] { End(RunStep(work_, [this] { return Run(); })); });
  }

  void OnCancel() override { work_.cancel_group_execution(); }

  void OnDone() override {
    Record(kMethod, log_, LoggedCode(*context_, code_), shared_.metrics);
    delete this;
  }

 private:
  static constexpr char kMethod[] = "Evaluate";

  // The evaluation and its admission end with this function, before the call does.
  absl::Status Run() {
    if (context_->IsCancelled()) return CancelledStatus();
    if (!request_.has_config()) {
      return absl::InvalidArgumentError(
          "config is missing: Evaluate needs a config with num_classes and a batch");
    }
    CALIB_ASSIGN_OR_RETURN(Admission::Ticket ticket, shared_.admission->Admit());
    CALIB_ASSIGN_OR_RETURN(std::unique_ptr<LimitedEvaluator> evaluator,
                           LimitedEvaluator::Create(request_.config(), shared_.limits));
    const absl::Status added = evaluator->Add(request_.batch());
    shared_.metrics->Samples(kMethod, evaluator->samples());
    CALIB_RETURN_IF_ERROR(added);
    if (context_->IsCancelled()) return CancelledStatus();
    v1::EvaluateResponse response;
    CALIB_ASSIGN_OR_RETURN(*response.mutable_report(), evaluator->Finish());
    log_.SetSamples(response.report().metrics().num_samples());
    bool own_buffer;
    const grpc::Status serialized =
        grpc::SerializationTraits<v1::EvaluateResponse>::Serialize(response, response_,
                                                                   &own_buffer);
    if (!serialized.ok()) {
      return absl::InternalError(
          absl::StrCat("the report does not serialize: ", serialized.error_message()));
    }
    return absl::OkStatus();
  }

  // The last touch of `this` outside OnDone.
  void End(const absl::Status& status) {
    grpc::Status result = ToGrpcStatus(status);
    code_ = result.error_code();
    Finish(std::move(result));
  }

  grpc::CallbackServerContext* const context_;
  v1::EvaluateRequest request_;
  grpc::ByteBuffer* const response_;
  const Shared shared_;
  CallLog log_;
  tbb::task_group_context work_{tbb::task_group_context::isolated};
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
                        v1::EvaluateStreamResponse* response, const Shared& shared)
      : context_(context),
        response_(response),
        shared_(shared),
        log_(kMethod, context->peer(), CallLog::Kind::kClientStream) {
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
      const uint64_t bytes = incoming_.ByteSizeLong();
      log_.AddMessage(bytes);
      shared_.metrics->Received(kMethod, bytes);
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

  void OnCancel() override { cancel_.cancel_group_execution(); }

  void OnDone() override {
    Record(kMethod, log_, LoggedCode(*context_, code_), shared_.metrics);
    delete this;
  }

 private:
  static constexpr char kMethod[] = "EvaluateStream";

  // Starts what can start: the next task, and the next read. Called with mutex_ held.
  void Pump() {
    if (!computing_) {
      if (has_next_) {
        next_.Swap(&work_);
        has_next_ = false;
        computing_ = true;
        shared_.arena->enqueue(
            [this] { Consumed(RunStep(cancel_, [this] { return Consume(); })); });
      } else if (half_closed_ && unparsable_) {
        // The messages before it were consumed without error.
        computing_ = true;
        shared_.arena->enqueue([this, message = received_ + 1] {
          End(absl::InvalidArgumentError(absl::StrCat(
              "message ", message,
              " of the stream does not parse as a calib.v1.EvaluateStreamRequest")));
        });
      } else if (half_closed_) {
        computing_ = true;
        shared_.arena->enqueue(
            [this] { End(RunStep(cancel_, [this] { return Report(); })); });
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
        CALIB_ASSIGN_OR_RETURN(Admission::Ticket ticket, shared_.admission->Admit());
        ticket_.emplace(std::move(ticket));
        CALIB_ASSIGN_OR_RETURN(evaluator_,
                               LimitedEvaluator::Create(work_.config(), shared_.limits));
        return absl::OkStatus();
      }
      case v1::EvaluateStreamRequest::kBatch: {
        if (evaluator_ == nullptr) {
          return absl::FailedPreconditionError(
              "the first message of a stream must be the config, not a batch");
        }
        const uint64_t before = evaluator_->samples();
        const absl::Status added = evaluator_->Add(work_.batch());
        shared_.metrics->Samples(kMethod, evaluator_->samples() - before);
        return added;
      }
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

  // The last touch of `this` outside OnDone. The evaluation's memory and admission are
  // given back first, not when gRPC gets round to OnDone.
  void End(const absl::Status& status) {
    evaluator_.reset();
    ticket_.reset();
    grpc::Status result = ToGrpcStatus(status);
    code_ = result.error_code();
    Finish(std::move(result));
  }

  grpc::CallbackServerContext* const context_;
  v1::EvaluateStreamResponse* const response_;
  const Shared shared_;
  CallLog log_;
  tbb::task_group_context cancel_{tbb::task_group_context::isolated};

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
  std::optional<Admission::Ticket> ticket_;
  std::unique_ptr<LimitedEvaluator> evaluator_;
  grpc::StatusCode code_ = grpc::StatusCode::UNKNOWN;
};

}  // namespace

grpc::ServerUnaryReactor* CalibrationServiceImpl::Evaluate(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  return new EvaluateReactor(context, request, response,
                             Shared{limits_, arena_, admission_, metrics_});
}

grpc::ServerReadReactor<v1::EvaluateStreamRequest>*
CalibrationServiceImpl::EvaluateStream(grpc::CallbackServerContext* context,
                                       v1::EvaluateStreamResponse* response) {
  return new EvaluateStreamReactor(context, response,
                                   Shared{limits_, arena_, admission_, metrics_});
}

grpc::ServerUnaryReactor* CalibrationServiceImpl::GetServerInfo(
    grpc::CallbackServerContext* context, const v1::GetServerInfoRequest* /*request*/,
    v1::GetServerInfoResponse* response) {
  CallLog log("GetServerInfo", context->peer());
  response->set_version(CALIB_VERSION);
  response->set_max_message_bytes(max_message_bytes_);
  response->set_max_rows(limits_.max_rows);
  response->set_max_classes(limits_.max_classes);
  response->set_memory_budget_bytes(
      limits_.stores.budget == nullptr ? 0 : limits_.stores.budget->limit());
  response->set_fit_store_bytes(limits_.stores.fit_store_bytes);
  response->set_max_concurrent_evaluations(admission_->limit());
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  log.Write(grpc::StatusCode::OK);
  metrics_->CallEnded("GetServerInfo", grpc::StatusCode::OK);
  return reactor;
}

}  // namespace calib
