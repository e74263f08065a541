"""Box geometry shared by every stage: conversions, IoU, NMS, box coding, calibration."""
