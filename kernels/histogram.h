#pragma once

#include <cstdint>

namespace cdl::kernels {

// counts[s] = number of i in [0, n) with sym[i] == s, for all 256 byte values.
void histogram(const uint8_t* sym, int64_t n, uint64_t counts[256]);

// n * H(empirical distribution) in bits: the order-0 entropy bound of the counted symbols.
double entropyBits(const uint64_t counts[256]);

}  // namespace cdl::kernels
