// Division by a number fixed for a whole launch (a size or a stride).
//
// A 32-bit integer division is a called sequence of about twenty instructions;
// kernels that split a flat index into coordinates do several per element,
// enough to make a memory-bound kernel compute-bound for 16-bit data.  With a
// magic number computed once on the host (kernels/plan.py: divider; Granlund and
// Montgomery's method, as PyTorch's IntDivider), n / d is a multiply-high, an
// add and a shift.  Exact for 0 <= n < 2**31 and 1 <= d < 2**31, which every
// 32-bit instantiation guarantees (kernels/plan.py: index_type); the 64-bit
// instantiations divide plainly, and ignore magic and shift.
#pragma once

namespace fastact {

template <typename Index>
struct Divider {
  Index divisor;
  unsigned magic;
  unsigned shift;

  __device__ __forceinline__ Index div(Index n) const {
    if constexpr (sizeof(Index) == 4) {
      const unsigned high = __umulhi(static_cast<unsigned>(n), magic);
      return static_cast<Index>((high + static_cast<unsigned>(n)) >> shift);
    } else {
      return n / divisor;
    }
  }

  // rest % divisor, leaving rest / divisor in rest: peels one coordinate off a flat index.
  __device__ __forceinline__ Index take(Index& rest) const {
    const Index quotient = div(rest);
    const Index remainder = rest - quotient * divisor;
    rest = quotient;
    return remainder;
  }
};

}  // namespace fastact
