#include "src/block_accumulator.h"

#include <optional>
#include <utility>

#include "oneapi/tbb/parallel_for.h"
#include "oneapi/tbb/task_arena.h"
#include "src/labels.h"

namespace calib {

absl::Status BlockAccumulator::Add(const RowSource& src, Affine affine) {
  // Cut the run at global block boundaries: a head that continues the open block, then
  // whole blocks, then a tail that stays open.
  struct Segment {
    uint64_t begin, end;       // local rows
    uint64_t first_sample;     // index into samples_
    bool continues_open;       // the head of a run that starts inside a block
    std::optional<Sums> sums;  // unset for the head, which continues open_
  };
  std::vector<Segment> segments;
  const uint32_t per_row = options_.samples_per_row();
  uint64_t sample = samples_.size();
  for (uint64_t begin = 0; begin < src.rows;) {
    const uint64_t global = rows_ + begin;
    const uint64_t end = std::min(src.rows, begin + kBlockRows - global % kBlockRows);
    segments.push_back({begin, end, sample, begin == 0 && rows_ % kBlockRows != 0, {}});
    for (uint64_t i = begin * per_row; i < end * per_row; ++i) {
      sample += src.labels[i] != kIgnoredLabel;
    }
    begin = end;
  }
  samples_.resize(sample);

  // Waves of a few blocks per thread bound the Sums alive at once (with the bootstrap
  // each holds B x bins replicate sums); the fold order, and so the bits, stay the same.
  const size_t wave = 2 * static_cast<size_t>(tbb::this_task_arena::max_concurrency());
  for (size_t first = 0; first < segments.size(); first += wave) {
    const size_t last = std::min(segments.size(), first + wave);
    std::vector<absl::Status> status(last - first);
    tbb::parallel_for(first, last, [&](size_t i) {
      Segment& seg = segments[i];
      if (!seg.continues_open) seg.sums.emplace(options_);
      status[i - first] = kernel_.Accumulate(
          src, seg.begin, seg.end, affine, seg.continues_open ? &open_ : &*seg.sums,
          {samples_.data() + seg.first_sample, seg.first_sample});
    });
    for (const absl::Status& s : status) {
      if (!s.ok()) return s;
    }
    for (size_t i = first; i < last; ++i) {
      Segment& seg = segments[i];
      const bool complete = (rows_ + seg.end) % kBlockRows == 0;
      if (seg.continues_open) {
        if (complete) {
          total_.Merge(open_);
          open_ = Sums(options_);
        }
      } else if (complete) {
        total_.Merge(*seg.sums);
      } else {
        open_ = std::move(*seg.sums);
      }
      seg.sums.reset();
    }
  }
  rows_ += src.rows;
  return absl::OkStatus();
}

Sums BlockAccumulator::Finish() {
  total_.Merge(open_);
  open_ = Sums(options_);
  return std::move(total_);
}

}  // namespace calib
