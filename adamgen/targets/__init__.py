"""Code generation targets: what each kind of kernel (CPU, CUDA) needs to know about itself."""
