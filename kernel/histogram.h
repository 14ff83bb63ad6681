// A latency histogram with power-of-two buckets (in nanoseconds), cheap
// enough for the fault path: one increment per sample, no allocation.
// Percentiles are read from the buckets, so they are accurate to a factor of
// two within a bucket; the median is interpolated inside its bucket.
//
// Threads: record() from one thread at a time; snapshot copies are values.
#pragma once

#include <array>
#include <bit>
#include <cstdint>

namespace sk {

class Histogram {
 public:
  // Bucket i holds samples in [2^i, 2^(i+1)) ns; bucket 0 also holds 0.
  static constexpr int kBuckets = 40;

  void record(uint64_t nanoseconds) {
    int bucket = nanoseconds == 0 ? 0 : std::bit_width(nanoseconds) - 1;
    if (bucket >= kBuckets) bucket = kBuckets - 1;
    ++m_counts[static_cast<size_t>(bucket)];
    ++m_total;
    m_sum += nanoseconds;
  }

  uint64_t count() const { return m_total; }
  uint64_t sum() const { return m_sum; }
  uint64_t bucket(int i) const { return m_counts[static_cast<size_t>(i)]; }
  static uint64_t bucket_low(int i) { return i == 0 ? 0 : uint64_t{1} << i; }

  // The value below which `fraction` (0..1) of the samples fall, interpolated
  // linearly inside the bucket that holds it. 0 without samples.
  uint64_t percentile(double fraction) const {
    if (m_total == 0) return 0;
    double target = fraction * static_cast<double>(m_total);
    double seen = 0;
    for (int i = 0; i < kBuckets; ++i) {
      double in_bucket = static_cast<double>(m_counts[static_cast<size_t>(i)]);
      if (in_bucket > 0 && seen + in_bucket >= target) {
        double low = static_cast<double>(bucket_low(i));
        double high = static_cast<double>(uint64_t{1} << (i + 1));
        return static_cast<uint64_t>(low + (high - low) * ((target - seen) / in_bucket));
      }
      seen += in_bucket;
    }
    return uint64_t{1} << kBuckets;
  }

  void merge(const Histogram& other) {
    for (size_t i = 0; i < m_counts.size(); ++i) m_counts[i] += other.m_counts[i];
    m_total += other.m_total;
    m_sum += other.m_sum;
  }

 private:
  std::array<uint64_t, kBuckets> m_counts{};
  uint64_t m_total = 0;
  uint64_t m_sum = 0;
};

}  // namespace sk
