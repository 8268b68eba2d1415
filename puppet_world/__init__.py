"""The puppet world: synthetic people drawn from known skeletons, with ground-truth masks, keypoints and edits."""
