"""An empty pyinfra deploy: connects to every host and runs no operation (P1's baseline)."""
