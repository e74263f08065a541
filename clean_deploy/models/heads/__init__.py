"""Dense detection heads (anchor, center) with an optional IoU-quality branch."""
