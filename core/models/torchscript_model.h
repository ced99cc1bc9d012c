#pragma once

#include <memory>
#include <string>

#include "core/models/models.h"

namespace cdl::core {

// Note [TorchScript models]
// model.name torchscript trains the module a user saved with torch.jit.script(m).save(path)
// (model.torchscript names the file): images [N, C, H, W] in and logits [N, classes] out, or, on
// a text set (Note [Text data]), tokens [N, context] (int64) in and logits [N, classes, context]
// out, as the data set gives them. Its parameters and buffers (batchnorm statistics included)
// are registered on the Net under the module's own names ("conv1.weight", "features.0.bias",
// ...) as the very same tensors, so the Reducer, the optimizer, checkpoints and resume see them
// as they see a built-in model's, and train()/eval() reach the module's own training flag. The
// module's forward is TorchScript code cdl cannot rewrite, so there is no CDL variant (cdl.mode
// must be none), and the model is one segment: it cannot be split into pipeline stages.
//
// The file is checked before anything else happens: a missing file, one that is not TorchScript,
// a module without parameters, or one whose output for a probe batch has not the shape above is
// one cdl::Error naming the file (c10's backtrace left out).
std::shared_ptr<Net> loadTorchScriptModel(const std::string& path, const ModelOptions& opt);

}  // namespace cdl::core
