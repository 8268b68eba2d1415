"""The method's network: Stable Diffusion 1.5 + ControlNet inflated to video (RCA, temporal attention, MA)."""
