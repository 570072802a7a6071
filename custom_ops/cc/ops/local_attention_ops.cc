// Registration of the GFLA local-attention op family and its shape functions.
//
// GflaBlockExtract    (source, flow)            -> block  [B, H, W, k*k, C]
// GflaLocalAttention  (source, flow, attention) -> output [B, H, W, C]
// and their gradients. See gfla_tf/ops/reference.py for the sampling semantics.

#include <string>
#include <vector>

#include "tensorflow/core/framework/common_shape_fns.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/util/overflow.h"

namespace gfla {
namespace {

using ::tensorflow::Status;
using ::tensorflow::shape_inference::DimensionHandle;
using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;

// Reads and validates the kernel_size attribute.
Status GetKernelSize(InferenceContext* c, int* kernel_size) {
  TF_RETURN_IF_ERROR(c->GetAttr("kernel_size", kernel_size));
  if (*kernel_size < 1) {
    return tensorflow::errors::InvalidArgument("kernel_size must be an integer >= 1, got ",
                                               *kernel_size);
  }
  return Status();
}

// Checks source [B, Hs, Ws, C] and flow [B, H, W, 2]; merges the batch dimension.
Status CheckSourceAndFlow(InferenceContext* c, int source_index, int flow_index,
                          ShapeHandle* source, ShapeHandle* flow, DimensionHandle* batch) {
  if (c->RankKnown(c->input(source_index)) && c->Rank(c->input(source_index)) != 4) {
    return tensorflow::errors::InvalidArgument(
        "source must have rank 4 [batch, height, width, channels], got shape ",
        c->DebugString(c->input(source_index)));
  }
  TF_RETURN_IF_ERROR(c->WithRank(c->input(source_index), 4, source));
  if (c->RankKnown(c->input(flow_index)) && c->Rank(c->input(flow_index)) != 4) {
    return tensorflow::errors::InvalidArgument(
        "flow must have rank 4 [batch, height, width, 2], got shape ",
        c->DebugString(c->input(flow_index)));
  }
  TF_RETURN_IF_ERROR(c->WithRank(c->input(flow_index), 4, flow));
  DimensionHandle flow_channels = c->Dim(*flow, 3);
  if (c->ValueKnown(flow_channels) && c->Value(flow_channels) != 2) {
    return tensorflow::errors::InvalidArgument(
        "flow must have 2 channels (x, y) in its last dimension, got shape ",
        c->DebugString(*flow));
  }
  if (!c->Merge(c->Dim(*source, 0), c->Dim(*flow, 0), batch).ok()) {
    return tensorflow::errors::InvalidArgument("batch mismatch: source has shape ",
                                               c->DebugString(*source),
                                               " but flow has shape ", c->DebugString(*flow));
  }
  return Status();
}

// Checks attention [B, H, W, k*k] against flow [B, H, W, 2].
Status CheckAttention(InferenceContext* c, int attention_index, const ShapeHandle& flow,
                      int kernel_size, ShapeHandle* attention) {
  const int64_t taps = static_cast<int64_t>(kernel_size) * kernel_size;
  if (c->RankKnown(c->input(attention_index)) && c->Rank(c->input(attention_index)) != 4) {
    return tensorflow::errors::InvalidArgument("attention must have rank 4 [batch, height, width, ",
                                               taps, "], got shape ",
                                               c->DebugString(c->input(attention_index)));
  }
  TF_RETURN_IF_ERROR(c->WithRank(c->input(attention_index), 4, attention));
  DimensionHandle attention_channels = c->Dim(*attention, 3);
  if (c->ValueKnown(attention_channels) && c->Value(attention_channels) != taps) {
    return tensorflow::errors::InvalidArgument("attention must have kernel_size**2 = ", taps,
                                               " channels, got shape ",
                                               c->DebugString(*attention));
  }
  const char* names[3] = {"batch", "height", "width"};
  for (int axis = 0; axis < 3; ++axis) {
    DimensionHandle merged;
    if (!c->Merge(c->Dim(*attention, axis), c->Dim(flow, axis), &merged).ok()) {
      return tensorflow::errors::InvalidArgument(
          names[axis], " mismatch: attention has shape ", c->DebugString(*attention),
          " but flow has shape ", c->DebugString(flow));
    }
  }
  return Status();
}

// Makes the output shape from `dims`. When every size is known, refuses a shape whose element
// count overflows int64 (TensorShape's rule: no running product may overflow), with the
// message of the Python validation and of the kernels.
Status MakeOutputShape(InferenceContext* c, const char* op,
                       const std::vector<DimensionHandle>& dims, ShapeHandle* out) {
  int64_t elements = 1;
  bool known = true;
  std::string sizes;
  for (const DimensionHandle& dim : dims) {
    if (!c->ValueKnown(dim)) {
      known = false;
      break;
    }
    const int64_t size = c->Value(dim);
    sizes += (sizes.empty() ? "" : ", ") + std::to_string(size);
    if (elements >= 0) elements = ::tensorflow::MultiplyWithoutOverflow(elements, size);
  }
  if (known && elements < 0) {
    return tensorflow::errors::InvalidArgument(op, " output shape [", sizes,
                                               "] has more than 2**63 - 1 elements");
  }
  *out = c->MakeShape(dims);
  return Status();
}

Status BlockExtractShape(InferenceContext* c) {
  int kernel_size;
  TF_RETURN_IF_ERROR(GetKernelSize(c, &kernel_size));
  ShapeHandle source, flow;
  DimensionHandle batch;
  TF_RETURN_IF_ERROR(CheckSourceAndFlow(c, 0, 1, &source, &flow, &batch));
  ShapeHandle block;
  TF_RETURN_IF_ERROR(MakeOutputShape(
      c, "block_extract",
      {batch, c->Dim(flow, 1), c->Dim(flow, 2),
       c->MakeDim(static_cast<int64_t>(kernel_size) * kernel_size), c->Dim(source, 3)},
      &block));
  c->set_output(0, block);
  return Status();
}

Status BlockExtractGradShape(InferenceContext* c) {
  int kernel_size;
  TF_RETURN_IF_ERROR(GetKernelSize(c, &kernel_size));
  ShapeHandle source, flow, grad;
  DimensionHandle batch;
  TF_RETURN_IF_ERROR(CheckSourceAndFlow(c, 1, 2, &source, &flow, &batch));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 5, &grad));
  c->set_output(0, source);
  c->set_output(1, flow);
  return Status();
}

Status LocalAttentionShape(InferenceContext* c) {
  int kernel_size;
  TF_RETURN_IF_ERROR(GetKernelSize(c, &kernel_size));
  ShapeHandle source, flow, attention;
  DimensionHandle batch;
  TF_RETURN_IF_ERROR(CheckSourceAndFlow(c, 0, 1, &source, &flow, &batch));
  TF_RETURN_IF_ERROR(CheckAttention(c, 2, flow, kernel_size, &attention));
  ShapeHandle output;
  TF_RETURN_IF_ERROR(MakeOutputShape(
      c, "local_attention", {batch, c->Dim(flow, 1), c->Dim(flow, 2), c->Dim(source, 3)},
      &output));
  c->set_output(0, output);
  return Status();
}

Status LocalAttentionGradShape(InferenceContext* c) {
  int kernel_size;
  TF_RETURN_IF_ERROR(GetKernelSize(c, &kernel_size));
  ShapeHandle source, flow, attention, grad;
  DimensionHandle batch;
  TF_RETURN_IF_ERROR(CheckSourceAndFlow(c, 1, 2, &source, &flow, &batch));
  TF_RETURN_IF_ERROR(CheckAttention(c, 3, flow, kernel_size, &attention));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 4, &grad));
  c->set_output(0, source);
  c->set_output(1, flow);
  c->set_output(2, attention);
  return Status();
}

}  // namespace

REGISTER_OP("GflaBlockExtract")
    .Input("source: T")
    .Input("flow: T")
    .Output("block: T")
    .Attr("kernel_size: int")
    .Attr("T: {half, float, double}")
    .SetShapeFn(BlockExtractShape)
    .Doc(R"doc(
Samples a kernel_size x kernel_size block of `source` around each flow-displaced position.

source: [B, Hs, Ws, C].
flow: [B, H, W, 2] backward flow in source pixels, channel 0 = x, 1 = y.
block: [B, H, W, k*k, C]; tap n = i*k + j is sampled at
  (y + flow_y + i - k/2, x + flow_x + j - k/2) with border-clamped bilinear taps.
)doc");

REGISTER_OP("GflaBlockExtractGrad")
    .Input("grad: T")
    .Input("source: T")
    .Input("flow: T")
    .Output("grad_source: T")
    .Output("grad_flow: T")
    .Attr("kernel_size: int")
    .Attr("T: {half, float, double}")
    .SetShapeFn(BlockExtractGradShape)
    .Doc("Gradient of GflaBlockExtract w.r.t. source and flow.");

REGISTER_OP("GflaLocalAttention")
    .Input("source: T")
    .Input("flow: T")
    .Input("attention: T")
    .Output("output: T")
    .Attr("kernel_size: int")
    .Attr("T: {half, float, double}")
    .SetShapeFn(LocalAttentionShape)
    .Doc(R"doc(
Fused local attention: sum_n attention[..., n] * block[..., n, :] / k**2, where block is
GflaBlockExtract(source, flow). The block is never materialised.

source: [B, Hs, Ws, C].
flow: [B, H, W, 2].
attention: [B, H, W, k*k].
output: [B, H, W, C].
)doc");

REGISTER_OP("GflaLocalAttentionGrad")
    .Input("grad: T")
    .Input("source: T")
    .Input("flow: T")
    .Input("attention: T")
    .Output("grad_source: T")
    .Output("grad_flow: T")
    .Output("grad_attention: T")
    .Attr("kernel_size: int")
    .Attr("T: {half, float, double}")
    .SetShapeFn(LocalAttentionGradShape)
    .Doc("Gradient of GflaLocalAttention w.r.t. source, flow and attention.");

REGISTER_OP("GflaBuildInfo")
    .Output("info: string")
    .SetShapeFn(::tensorflow::shape_inference::ScalarShape)
    .Doc("JSON describing how the library was built (TF version, CUDA kernels).");

}  // namespace gfla
