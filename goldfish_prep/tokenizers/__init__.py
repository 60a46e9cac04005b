"""Tokenizer adapters: one small interface over tiktoken, HF tokenizers and SentencePiece."""
