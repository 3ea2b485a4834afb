// anno::step_load / step_run / step_free: a compiled decode step (an AOTInductor package, engine/step_package.py)
// loaded and run from torch ops, because a torch op's call from Python releases the GIL while it runs and
// AOTInductor's own Python loader does not (its boxed_run and run hold it: a spinning Python thread made 0
// iterations during 2,000 demo-model steps, against 7.3 million during 200 calls of anno_linear, 2026-12-01,
// /tmp/s12/gil.py, gil3.py). With the GIL held, the batcher's step stalled every other Python thread of the
// server for the step (12x768: ~16 ms), the consumers of its streams included.
// Included by engine/blas.cpp (which registers the ops); engine/blas.py puts this file in the library's digest.
#pragma once

#include <torch/csrc/inductor/aoti_package/model_package_loader.h>

#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace {
std::mutex g_steps_mu;
// id -> loader; a freed id's slot is empty (ids are never reused, so a stale id fails loudly, not silently)
std::vector<std::unique_ptr<torch::inductor::AOTIModelPackageLoader>> g_steps;

torch::inductor::AOTIModelPackageLoader* step_at(int64_t id) {
  std::lock_guard<std::mutex> lock(g_steps_mu);
  TORCH_CHECK(id >= 0 && id < static_cast<int64_t>(g_steps.size()) && g_steps[id],
              "anno::step_run: no loaded step package with id ", id);
  return g_steps[id].get();
}

// Loads the package at `path` with its constants bound to the given tensors (the model's own, not copied:
// user_managed; `names` may list more than the package needs). Returns the id step_run takes.
int64_t step_load(const std::string& path, const std::vector<std::string>& names,
                  const std::vector<at::Tensor>& constants) {
  TORCH_CHECK(names.size() == constants.size(), "anno::step_load: ", names.size(), " names for ",
              constants.size(), " constants");
  auto loader = std::make_unique<torch::inductor::AOTIModelPackageLoader>(path);
  std::unordered_map<std::string, at::Tensor> given, map;
  for (size_t i = 0; i < names.size(); ++i) given.emplace(names[i], constants[i]);
  for (const auto& fqn : loader->get_constant_fqns()) {
    auto it = given.find(fqn);
    TORCH_CHECK(it != given.end(), "anno::step_load: the package at ", path, " needs constant ", fqn,
                ", which was not given");
    map.emplace(fqn, it->second);
  }
  loader->load_constants(map, /*use_inactive=*/false, /*check_full_update=*/true, /*user_managed=*/true);
  std::lock_guard<std::mutex> lock(g_steps_mu);
  g_steps.push_back(std::move(loader));
  return static_cast<int64_t>(g_steps.size()) - 1;
}

// One call of the package (inputs as engine/step_package.py's _Step takes them); the GIL is released by the
// op call. The loader is not freed under a running call: step_free is only called when its Python owner is
// gone, and that owner is the only caller.
std::vector<at::Tensor> step_run(int64_t id, std::vector<at::Tensor> inputs) {
  return step_at(id)->boxed_run(std::move(inputs));
}

void step_free(int64_t id) {
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> gone;
  {
    std::lock_guard<std::mutex> lock(g_steps_mu);
    if (id >= 0 && id < static_cast<int64_t>(g_steps.size())) gone = std::move(g_steps[id]);
  }
}
}  // namespace
