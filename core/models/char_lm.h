#pragma once

#include <memory>

#include "core/models/models.h"

namespace cdl::core {

// Note [Char LM]
// A small GPT-style character-level language model for text sets (Note [Text data]): a token
// embedding "embed" (classes x width) plus a learned position embedding "pos" (context x
// width); `layers` pre-norm blocks "block<i>", each causal multi-head self-attention ("ln1",
// "qkv", "proj") and a GELU MLP of 4 x width ("ln2", "fc1", "fc2"), each added to its input; a
// last layer norm "ln"; and the output tied to the embedding (logits = h embed^T), so the model
// has no separate output matrix. Its parameters differ widely in shape and in what their
// gradients look like, which is what layerwise-adaptive rates plan for. Logits come out as
// [batch, classes, context], the class dimension second, as cross-entropy and argmax over dim 1
// take them, so the trainer's loss and accuracy are per token. Weights start as GPT-2's: normal
// with standard deviation 0.02, biases zero, layer norms one. No CDL variant, and one segment
// (the tied embedding spans the whole model, so it cannot be split).
std::shared_ptr<Net> makeCharLm(const ModelOptions& opt);

}  // namespace cdl::core
