"""Report sections: training curves for every stage, the PPO panel, and the method comparison."""
