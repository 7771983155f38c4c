"""Serving: export a generated adapter as a plain LoRA and load it with plain peft (and vLLM).

    python examples/serve_exported_lora.py [--out DIR] [--model M] [--generator G]
"""

import argparse
from importlib import resources

import torch
from peft import PeftModel

from peft_generative.answering import chat_inputs
from peft_generative.default_model import load_base_model, resolve_model
from peft_generative.loading import load_generative_model

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--out", default="quillmoor-lora")
parser.add_argument("--model")
parser.add_argument("--generator")
args = parser.parse_args()

model, tokenizer, _ = load_generative_model(args.model, args.generator)
ctx = model.contextualize((resources.files("peft_generative") / "assets" / "quillmoor.txt").read_text())
ctx.save_pretrained(args.out)
print(f"exported a rank-{ctx.config.adapter_rank} LoRA to {args.out}/")

# plain peft on the bare base model: no peft_generative needed from here on
base, _ = load_base_model(args.model)
lora = PeftModel.from_pretrained(base, args.out)
inputs = chat_inputs(tokenizer, "Who built the lighthouse in Quillmoor?")
with torch.no_grad():
    same = torch.allclose(lora(**inputs).logits, model(**inputs).logits, atol=1e-4)
    merged = lora.merge_and_unload()
    out = merged.generate(**inputs, max_new_tokens=24, do_sample=False)
print("plain peft reproduces the contextualised model's logits:", same)
print("merged model answers:", tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))

print(f"""
# vLLM (GPU servers), with the same files:
from vllm import LLM, SamplingParams
from vllm.lora.request import LoRARequest
llm = LLM(model="{resolve_model(args.model)}", enable_lora=True, max_lora_rank={ctx.config.adapter_rank})
out = llm.generate(["Who built the lighthouse in Quillmoor?"], SamplingParams(temperature=0, max_tokens=32),
                   lora_request=LoRARequest("quillmoor", 1, "{args.out}"))
""")
