"""StyleGAN2-ADA in PyTorch, written from the papers; a command-line program of its own."""
