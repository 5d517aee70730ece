// Algorithms (Kompute's term): a compute pipeline with its descriptor-set and pipeline layouts,
// built from embedded SPIR-V. The layouts come from SPIRV-Cross reflection of the module (storage
// buffer bindings, their writability, the push-constant size), never from per-shader tables.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backends/vulkan/device.h"

namespace pagoda::vk {

// What reflection reports about one compute shader.
struct ShaderLayout {
  std::vector<bool> writable;  // per storage-buffer binding 0..n-1 of set 0
  uint32_t push_bytes = 0;
  std::vector<uint32_t> spec_ids;  // constant_id of each specialization constant
  uint32_t local_size_x = 1;       // the default when set by a specialization constant
  int local_size_spec_id = -1;     // constant_id behind local_size_x, -1 if it is a literal
};

Result<ShaderLayout> reflect_spirv(const std::vector<uint32_t>& words);

struct SpecValue {
  uint32_t id;
  uint32_t value;
};

class Algorithm {
 public:
  static Result<std::unique_ptr<Algorithm>> create(const Device& dev, const std::string& name,
                                                   const std::vector<uint32_t>& words,
                                                   const std::vector<SpecValue>& spec);
  const std::string& name() const { return name_; }
  VkPipeline pipeline() const { return pipeline_.get(); }
  VkPipelineLayout layout() const { return layout_.get(); }
  VkDescriptorSetLayout set_layout() const { return set_layout_.get(); }
  const ShaderLayout& shader() const { return shader_; }
  uint32_t local_size() const { return local_size_; }

 private:
  std::string name_;
  ShaderLayout shader_;
  uint32_t local_size_ = 1;
  UniqueSetLayout set_layout_;
  UniquePipelineLayout layout_;
  UniquePipeline pipeline_;
};

// Algorithms by (shader, specialization), built on first use.
class PipelineCache {
 public:
  PipelineCache(std::shared_ptr<Device> dev, bool use_subgroups) : dev_(std::move(dev)), subgroups_(use_subgroups) {}
  // `shader` is the base name ("matmul"); without subgroups its "_nosg" variant is used if any.
  Result<const Algorithm*> get(const std::string& shader, const std::vector<SpecValue>& spec);
  bool use_subgroups() const { return subgroups_; }

 private:
  std::shared_ptr<Device> dev_;
  bool subgroups_;
  std::map<std::string, std::unique_ptr<Algorithm>> cache_;
};

}  // namespace pagoda::vk
