"""Real SmolLM2 (Llama-family) checkpoints for the transformer track.

Optional extra: ``pip install 'recall-theory[smollm2]'`` (gguf, tokenizers, safetensors).
The core package never imports this sub-package.

Modules (one idea each):

* :mod:`.checkpoint` - the neutral checkpoint form (HF tensor names, torch layout) and
  :func:`~.checkpoint.to_transformer`, which fills ``recall_theory.lm.model.Transformer``;
* :mod:`.gguf_file` - GGUF reader: dequantization (``gguf.quants``) and the q/k rotary
  row un-permutation;
* :mod:`.hf_folder` - local Hugging Face folder reader/writer (config.json, safetensors);
* :mod:`.tokenizer` - byte-level BPE tokenizer from GGUF metadata or tokenizer.json;
* :mod:`.chat` - the ChatML chat template;
* :mod:`.fetch` - getting SmolLM2-135M-Instruct from the package registry, sha256-checked;
* :mod:`.models` - names (``smollm2-135m-instruct``) or paths -> loaded model + tokenizer;
* :mod:`.ground_truth`, :mod:`.oracle`, :mod:`.experiment` - the real-p* LLM experiment.
"""
