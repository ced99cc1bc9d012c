#include "core/config/key_rules.h"

#include "kernels/base/error.h"

namespace cdl::core {

void checkKeysTogether(const Config& c) {
  // Note [Text data]: text goes with a language model (charlm, or a TorchScript module of
  // tokens), images with the other models.
  const bool text = c.data.dataset == "text", lm = c.model.name == "charlm";
  CDL_CHECK(
      text == lm || c.model.name == "torchscript", "config key ",
      text ? "model.name: " : "data.dataset: ",
      text ? c.model.name + " reads images; data.dataset text needs model charlm (or torchscript)"
           : c.data.dataset + " holds images; model charlm reads data.dataset text");
  if (lm) {
    CDL_CHECK(c.model.width % c.model.heads == 0, "config key model.heads: ", c.model.heads,
              " heads do not divide model.width ", c.model.width);
    CDL_CHECK(c.cdl.mode == "none", "config key cdl.mode: ", c.cdl.mode,
              " needs a model with CDL layers (mlp, cnn, resnet20), not charlm");
    CDL_CHECK(c.model.split.stages == 1,
              "config key model.split.stages: charlm ties its input "
              "and output embeddings, so it cannot be split");
  }
  // LSQ (cdl.mode lsq) rounds to the nearest level: no rate term reaches its weights.
  if (c.cdl.mode == "lsq") {
    CDL_CHECK(
        c.cdl.lambdaW == 0 && c.cdl.lambdaA == 0, "config key cdl.lambda_",
        c.cdl.lambdaW != 0 ? "w: " : "a: ", c.cdl.lambdaW != 0 ? c.cdl.lambdaW : c.cdl.lambdaA,
        ", but cdl.mode lsq has no rate term (its rounding passes no gradient to it); set "
        "it to 0, or take cdl.mode cdl or rcdl");
  }
  // Note [Kappa schedule]: a kappa that follows the schedule is not a parameter too.
  if (c.cdl.kappaFinal > 0) {
    CDL_CHECK(!c.cdl.trainKappa, "config key cdl.kappa_final: ", c.cdl.kappaFinal,
              ", but cdl.train_kappa is on: kappa either follows the schedule or is trained; "
              "leave one of them out");
    CDL_CHECK(c.cdl.mode == "cdl" || c.cdl.mode == "rcdl",
              "config key cdl.kappa_final: ", c.cdl.kappaFinal, ", but cdl.mode ", c.cdl.mode,
              " has no kappa (it takes cdl.mode cdl or rcdl)");
  }
  // Note [Training device]: what trains on the CPU only, for now.
  if (parseDeviceSpec(c.train.device).kind == DeviceSpec::kCuda) {
    CDL_CHECK(c.model.split.stages == 1, "config key train.device: ", c.train.device,
              ", but a split model (model.split.stages ", c.model.split.stages,
              ") trains on the CPU only; set train.device to cpu or auto");
    CDL_CHECK(c.cdl.mode == "none", "config key train.device: ", c.train.device,
              ", but the CDL quantizers (cdl.mode ", c.cdl.mode,
              ") run on the CPU only; set train.device to cpu or auto");
  }
  // Note [TorchScript models]: the file goes with the name, and what such a module cannot do.
  if (c.model.name == "torchscript") {
    CDL_CHECK(!c.model.torchscript.empty(),
              "config key model.torchscript: model torchscript needs the module's file");
    CDL_CHECK(c.cdl.mode == "none", "config key cdl.mode: ", c.cdl.mode,
              " needs a built-in model (mlp, cnn, resnet20); a TorchScript model's layers cannot "
              "be wrapped with CDL quantizers");
    CDL_CHECK(c.model.split.stages == 1, "config key model.split.stages: ", c.model.split.stages,
              " stages need a built-in model; a TorchScript model cannot be split");
  } else {
    CDL_CHECK(c.model.torchscript.empty(), "config key model.torchscript: set, but model.name is ",
              c.model.name, " (leave model.name out, or set it to torchscript)");
  }
}

}  // namespace cdl::core
