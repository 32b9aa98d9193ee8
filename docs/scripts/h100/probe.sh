. .dev/setup.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import sys, torch, transformers, typer, rich, safetensors, numpy; print(sys.version); print(torch.__version__, transformers.__version__, typer.__version__, safetensors.__version__, numpy.__version__, torch.cuda.get_device_name())"
ls -la /root/stash; nproc; free -g | head -2
