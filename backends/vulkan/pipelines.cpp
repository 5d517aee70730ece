// SPIR-V reflection (SPIRV-Cross C API) and compute-pipeline construction.
#include "backends/vulkan/pipelines.h"

#include <spirv_cross/spirv_cross_c.h>

#include <algorithm>
#include <cstring>

#include "backends/vulkan/shader_registry.h"

namespace pagoda::vk {
namespace {

// Owns a SPIRV-Cross context (which owns everything parsed from it).
struct SpvcContext {
  spvc_context ctx = nullptr;
  ~SpvcContext() {
    if (ctx) spvc_context_destroy(ctx);
  }
  Error error(const char* what) const {
    return make_error(std::string("SPIR-V reflection: ") + what + ": " + (ctx ? spvc_context_get_last_error_string(ctx) : "no context"));
  }
};

Status reflect_buffers(spvc_compiler comp, spvc_resources res, ShaderLayout& out, const SpvcContext& c) {
  const spvc_reflected_resource* list = nullptr;
  size_t n = 0;
  if (spvc_resources_get_resource_list_for_type(res, SPVC_RESOURCE_TYPE_STORAGE_BUFFER, &list, &n) != SPVC_SUCCESS)
    return c.error("listing storage buffers");
  out.writable.assign(n, true);
  std::vector<bool> seen(n, false);
  for (size_t i = 0; i < n; ++i) {
    const unsigned set = spvc_compiler_get_decoration(comp, list[i].id, SpvDecorationDescriptorSet);
    const unsigned binding = spvc_compiler_get_decoration(comp, list[i].id, SpvDecorationBinding);
    // Ops pass their tensors by binding number, so bindings must be exactly 0..n-1 of set 0.
    if (set != 0 || binding >= n || seen[binding])
      return make_error("SPIR-V reflection: storage buffer '" + std::string(list[i].name) +
                        "' must use set 0 and a binding in 0.." + std::to_string(n - 1) + " used once");
    seen[binding] = true;
    const SpvDecoration* decos = nullptr;
    size_t nd = 0;
    if (spvc_compiler_get_buffer_block_decorations(comp, list[i].id, &decos, &nd) != SPVC_SUCCESS)
      return c.error("reading buffer decorations");
    out.writable[binding] = std::find(decos, decos + nd, SpvDecorationNonWritable) == decos + nd;
  }
  return {};
}

Status reflect_push_and_spec(spvc_compiler comp, spvc_resources res, ShaderLayout& out, const SpvcContext& c) {
  const spvc_reflected_resource* list = nullptr;
  size_t n = 0;
  if (spvc_resources_get_resource_list_for_type(res, SPVC_RESOURCE_TYPE_PUSH_CONSTANT, &list, &n) != SPVC_SUCCESS)
    return c.error("listing push constants");
  if (n > 1) return make_error("SPIR-V reflection: more than one push-constant block");
  if (n == 1) {
    size_t bytes = 0;
    if (spvc_compiler_get_declared_struct_size(comp, spvc_compiler_get_type_handle(comp, list[0].base_type_id), &bytes) !=
        SPVC_SUCCESS)
      return c.error("sizing the push-constant block");
    out.push_bytes = uint32_t(bytes);
  }
  const spvc_specialization_constant* sc = nullptr;
  size_t ns = 0;
  if (spvc_compiler_get_specialization_constants(comp, &sc, &ns) != SPVC_SUCCESS) return c.error("listing spec constants");
  for (size_t i = 0; i < ns; ++i) out.spec_ids.push_back(sc[i].constant_id);

  spvc_specialization_constant wx{}, wy{}, wz{};
  spvc_compiler_get_work_group_size_specialization_constants(comp, &wx, &wy, &wz);
  if (wx.id != 0) {
    out.local_size_spec_id = int(wx.constant_id);
    out.local_size_x = spvc_constant_get_scalar_u32(spvc_compiler_get_constant_handle(comp, wx.id), 0, 0);
  } else {
    out.local_size_x = spvc_compiler_get_execution_mode_argument_by_index(comp, SpvExecutionModeLocalSize, 0);
  }
  return {};
}

std::vector<uint32_t> words_of(const EmbeddedShader& s) {
  std::vector<uint32_t> w(s.size / 4);
  std::memcpy(w.data(), s.bytes, w.size() * 4);  // the byte array carries no alignment promise
  return w;
}

}  // namespace

Result<ShaderLayout> reflect_spirv(const std::vector<uint32_t>& words) {
  SpvcContext c;
  if (spvc_context_create(&c.ctx) != SPVC_SUCCESS) return make_error("SPIR-V reflection: spvc_context_create failed");
  spvc_parsed_ir ir = nullptr;
  if (spvc_context_parse_spirv(c.ctx, words.data(), words.size(), &ir) != SPVC_SUCCESS) return c.error("parsing");
  spvc_compiler comp = nullptr;
  if (spvc_context_create_compiler(c.ctx, SPVC_BACKEND_NONE, ir, SPVC_CAPTURE_MODE_TAKE_OWNERSHIP, &comp) != SPVC_SUCCESS)
    return c.error("creating the reflector");
  spvc_resources res = nullptr;
  if (spvc_compiler_create_shader_resources(comp, &res) != SPVC_SUCCESS) return c.error("listing resources");
  ShaderLayout out;
  PAGODA_TRY(reflect_buffers(comp, res, out, c));
  PAGODA_TRY(reflect_push_and_spec(comp, res, out, c));
  return out;
}

Result<std::unique_ptr<Algorithm>> Algorithm::create(const Device& dev, const std::string& name,
                                                     const std::vector<uint32_t>& words,
                                                     const std::vector<SpecValue>& spec) {
  auto layout = reflect_spirv(words);
  if (!layout) return make_error(name + ": " + layout.error());
  std::unique_ptr<Algorithm> a(new Algorithm());
  a->name_ = name;
  a->shader_ = std::move(*layout);
  a->local_size_ = a->shader_.local_size_x;
  const VkDevice d = dev.handle();

  std::vector<VkSpecializationMapEntry> entries;
  std::vector<uint32_t> values;
  for (const SpecValue& s : spec) {
    const auto& ids = a->shader_.spec_ids;
    if (std::find(ids.begin(), ids.end(), s.id) == ids.end())
      return make_error("shader " + name + " has no specialization constant " + std::to_string(s.id));
    entries.push_back({s.id, uint32_t(values.size() * 4), 4});
    values.push_back(s.value);
    if (int(s.id) == a->shader_.local_size_spec_id) a->local_size_ = s.value;
  }

  std::vector<VkDescriptorSetLayoutBinding> binds;
  for (uint32_t i = 0; i < a->shader_.writable.size(); ++i)
    binds.push_back({i, VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, 1, VK_SHADER_STAGE_COMPUTE_BIT, nullptr});
  auto dl = vk_struct<VkDescriptorSetLayoutCreateInfo>(VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO);
  dl.bindingCount = uint32_t(binds.size());
  dl.pBindings = binds.data();
  VkDescriptorSetLayout set_layout = VK_NULL_HANDLE;
  PAGODA_VK_TRY(vkCreateDescriptorSetLayout, (d, &dl, nullptr, &set_layout));
  a->set_layout_ = UniqueSetLayout(d, set_layout);

  const VkPushConstantRange push{VK_SHADER_STAGE_COMPUTE_BIT, 0, a->shader_.push_bytes};
  auto pl = vk_struct<VkPipelineLayoutCreateInfo>(VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO);
  pl.setLayoutCount = 1;
  pl.pSetLayouts = &set_layout;
  pl.pushConstantRangeCount = a->shader_.push_bytes > 0 ? 1 : 0;
  pl.pPushConstantRanges = &push;
  VkPipelineLayout pipe_layout = VK_NULL_HANDLE;
  PAGODA_VK_TRY(vkCreatePipelineLayout, (d, &pl, nullptr, &pipe_layout));
  a->layout_ = UniquePipelineLayout(d, pipe_layout);

  auto mi = vk_struct<VkShaderModuleCreateInfo>(VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO);
  mi.codeSize = words.size() * 4;
  mi.pCode = words.data();
  VkShaderModule raw_module = VK_NULL_HANDLE;
  PAGODA_VK_TRY(vkCreateShaderModule, (d, &mi, nullptr, &raw_module));
  UniqueShaderModule module(d, raw_module);  // only needed until the pipeline exists

  const VkSpecializationInfo si{uint32_t(entries.size()), entries.data(), values.size() * 4, values.data()};
  auto ci = vk_struct<VkComputePipelineCreateInfo>(VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO);
  ci.stage = vk_struct<VkPipelineShaderStageCreateInfo>(VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO);
  ci.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
  ci.stage.module = module.get();
  ci.stage.pName = "main";
  ci.stage.pSpecializationInfo = entries.empty() ? nullptr : &si;
  ci.layout = pipe_layout;
  VkPipeline pipeline = VK_NULL_HANDLE;
  PAGODA_VK_TRY(vkCreateComputePipelines, (d, VK_NULL_HANDLE, 1, &ci, nullptr, &pipeline));
  a->pipeline_ = UniquePipeline(d, pipeline);
  return a;
}

Result<const Algorithm*> PipelineCache::get(const std::string& shader, const std::vector<SpecValue>& spec) {
  std::string variant = shader;
  if (!subgroups_ && find_embedded_shader(shader + "_nosg")) variant += "_nosg";
  std::string key = variant;
  for (const SpecValue& s : spec) {
    key += ':';
    key += std::to_string(s.id);
    key += '=';
    key += std::to_string(s.value);
  }
  auto it = cache_.find(key);
  if (it != cache_.end()) return static_cast<const Algorithm*>(it->second.get());
  const EmbeddedShader* src = find_embedded_shader(variant);
  if (!src) return make_error("no embedded shader named '" + variant + "' (was shaders/" + shader + ".comp built?)");
  auto alg = Algorithm::create(*dev_, variant, words_of(*src), spec);
  if (!alg) return alg.take_error();
  const Algorithm* raw = alg->get();
  cache_.emplace(std::move(key), std::move(*alg));
  return raw;
}

}  // namespace pagoda::vk
