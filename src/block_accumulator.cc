#include "src/block_accumulator.h"

#include <optional>
#include <utility>

#include "oneapi/tbb/parallel_for.h"
#include "src/labels.h"

namespace calib {

absl::Status BlockAccumulator::Add(const RowSource& src, Affine affine) {
  // Cut the run at global block boundaries: a head that continues the open block, then
  // whole blocks, then a tail that stays open.
  struct Segment {
    uint64_t begin, end;       // local rows
    uint64_t first_sample;     // index into samples_
    std::optional<Sums> sums;  // unset for the head, which continues open_
  };
  std::vector<Segment> segments;
  const uint32_t per_row = options_.samples_per_row();
  uint64_t sample = samples_.size();
  for (uint64_t begin = 0; begin < src.rows;) {
    const uint64_t global = rows_ + begin;
    const uint64_t end = std::min(src.rows, begin + kBlockRows - global % kBlockRows);
    Segment seg{begin, end, sample, std::nullopt};
    if (!(begin == 0 && rows_ % kBlockRows != 0)) seg.sums.emplace(options_);
    for (uint64_t i = begin * per_row; i < end * per_row; ++i) {
      sample += src.labels[i] != kIgnoredLabel;
    }
    segments.push_back(std::move(seg));
    begin = end;
  }
  samples_.resize(sample);

  std::vector<absl::Status> status(segments.size());
  tbb::parallel_for(size_t{0}, segments.size(), [&](size_t i) {
    Segment& seg = segments[i];
    status[i] = kernel_.Accumulate(src, seg.begin, seg.end, affine,
                                   seg.sums ? &*seg.sums : &open_,
                                   samples_.data() + seg.first_sample);
  });
  for (const absl::Status& s : status) {
    if (!s.ok()) return s;
  }

  for (Segment& seg : segments) {
    const bool complete = (rows_ + seg.end) % kBlockRows == 0;
    if (!seg.sums) {  // the head: open_ already holds it
      if (complete) {
        total_.Merge(open_);
        open_ = Sums(options_);
      }
    } else if (complete) {
      total_.Merge(*seg.sums);
    } else {
      open_ = std::move(*seg.sums);
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
