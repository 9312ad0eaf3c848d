"""Generation: one logits pipeline, constraints over the generated text, and the decoders that use them."""
