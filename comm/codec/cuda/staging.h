#pragma once

// The host side of a device payload: its header and hash (comm/codec/wire.h) need the bytes on
// the host.
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "comm/codec/wire.h"

namespace cdl::comm::cuda {

// Note [Payload hash on the host]
// A payload's header holds the xxhash64 of its body, seeded by that of the header's first 40
// bytes. XXH64 is one chain of 64-bit multiplies over a buffer (four lanes, but each depends on
// the last): on a GPU one thread would hash at well under 1 GB/s, and a whole warp cannot split
// one buffer. Copying the body to pinned host memory runs at PCIe speed (~25 GB/s) and the host
// hashes at ~10-20 GB/s, and the body is usually the compressed form, a fraction of the fp32
// input; the host also needs the header to validate it. So the device codecs copy the payload to
// the host and use the CPU's own writeHeader and readHeader (the same hash, the same checks). A
// batch of many small payloads could hash one per GPU thread instead; cdl codes one bucket chunk
// at a time, which the copy serves better.

// Seals the payload whose body (h.bodyBytes, already on the device at out_dev + kHeaderBytes):
// hashes the body on the host and writes the header to out_dev. Synchronizes `stream`.
void sealPayload(const PayloadHeader& h, uint8_t* out_dev, cudaStream_t stream);

// A host copy of in_dev[0..len) once `stream` reaches it, in this thread's pinned staging buffer:
// valid until the thread's next call of either function.
const uint8_t* stagePayload(const uint8_t* in_dev, size_t len, cudaStream_t stream);

}  // namespace cdl::comm::cuda
