"""KITTI 3D object evaluation (official devkit protocol): AP_R40/AP_R11 for 3D, BEV, 2D bbox
and AOS, from label arrays or from a split's label and result files."""
from clean_deploy.eval.files import evaluate_dirs, format_table, load_annos
from clean_deploy.eval.kitti_protocol import evaluate, precision_curves

__all__ = ["evaluate", "evaluate_dirs", "format_table", "load_annos", "precision_curves"]
