#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/model_file/model_canonical.h"
#include "core/model_file/model_file.h"
#include "core/models/models.h"

namespace cdl::core {

// What a coded model file says about itself (the JSON description of Note [Coded model file]):
// the network, how its weights were quantized, and the data it classifies.
struct ModelDescription {
  std::string model;  // a makeModel name
  ModelOptions options;
  // "cdl": the trained quantizers' levels; "ptq": post-training; "none": fp32 weights as trained
  std::string quantization;
  int bits = 0;                           // ptq: bits per weight
  std::string dataset = "fashion-mnist";  // or "synthetic"
  int64_t syntheticTest = 0;              // synthetic: the test split's size and seed
  uint64_t syntheticSeed = 0;
};

std::string describe(const ModelDescription& d);
// Parses a description; a missing or ill-typed key is a cdl::Error naming it.
ModelDescription parseDescription(const std::string& json);

struct ExportOptions {
  // Post-training quantization at this many bits (1..8); 0: a CDL model's own levels, or a model
  // trained without CDL kept in fp32 (the reference its quantized files are measured against).
  int bits = 0;
  bool canonical = false;  // Note [Canonical order] on the layers that allow it
  bool fp16 = false;       // float tensors (biases, batchnorm, steps) as fp16 instead of fp32
  // Post-training quantization of the first and last layers' weights at this many bits (as CDL
  // keeps them at cdl.first_last_bits); 0: at `bits` like the others.
  int firstLastBits = 0;
};

// The model's coded form, every parameter and buffer in module order: a CDL model's quantized
// weights as their nearest levels (what its evaluation computes with, so the file is lossless for
// the quantized model); otherwise every convolution and linear weight quantized after training at
// opts.bits with signed levels and the step of least squared error, or with opts.bits 0 kept as it
// is. Floats as opts says. With opts.canonical the layers of canonicalGroups are put in canonical
// order.
ModelFile quantizeModel(Net& model, const ModelDescription& d, const ExportOptions& opts);

// The layers of a model that canonical order applies to: hidden linear layers (mlp: fc1 and fc2;
// cnn: fc1) and the cnn's conv2 (its output channels with bn2, feeding fc1); linear layers
// evaluate exactly (Note [Exact linear]), so these permutations keep the logits bit for bit.
// Not conv1 (conv2 sums its input channels in fp32, in an order the permutation changes) nor
// ResNet-20 (residual additions tie channels across blocks).
std::vector<UnitGroup> canonicalGroups(const ModelDescription& d);

// The network a file describes, with its tensors loaded (a tensor the network lacks, or one it
// has that the file lacks or shapes differently, is a cdl::Error naming it). Its linear layers
// evaluate exactly from the file's indices; with stream, straight from their coded streams (their
// fp32 weight tensors are then left zero: nothing decodes into them).
std::shared_ptr<Net> modelFromFile(const ModelFile& file, bool stream = false);

// The .cdlm file at path, checked (cdl::Error naming the file and what is wrong).
ModelFile readModelFile(const std::string& path, bool decodeStreams = true);
// Writes it atomically.
void writeModelFile(const std::string& path, ModelFile& file);

}  // namespace cdl::core
