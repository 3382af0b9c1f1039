"""An independent YOLO reference: the same Darknet files through OpenCV's own importer.

`cv2.dnn.readNetFromDarknet` parses the cfg and weights with OpenCV's code, not ours: a cross-check of the whole
chain (docs/design.md, "Darknet's geometry") and the speed anchor of `bench/bench_detect.py`. Preprocessing is
what OpenCV users write: `cv2.resize` (INTER_LINEAR), for letterbox Darknet's geometry on a grey (127) canvas.
"""
from typing import List

import numpy as np

from partC.yolo import darknet_letterbox_geometry


def available() -> bool:
    try:
        import cv2  # noqa: F401
    except ImportError:
        return False
    return True


class OpenCVDetector:
    """yolov3(-tiny) through cv2.dnn; call it on an RGB uint8 H×W×3 array."""

    def __init__(self, cfg, weights, names, input_size=416, conf_threshold=0.25, nms_threshold=0.45,
                 resize="letterbox", threads=None):
        import cv2

        self.cv2 = cv2
        if threads:
            cv2.setNumThreads(threads)
        self.net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
        self.net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        self.net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        self.outputs = self.net.getUnconnectedOutLayersNames()
        self.names = list(names)
        self.size, self.conf, self.nms, self.resize = input_size, conf_threshold, nms_threshold, resize

    def __call__(self, rgb: np.ndarray) -> List[dict]:
        cv2, size = self.cv2, self.size
        h, w = rgb.shape[:2]
        if self.resize == "stretch":
            image = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_LINEAR)
            scale_x, scale_y, pad_x, pad_y = size / w, size / h, 0, 0
        else:
            new_w, new_h, pad_x, pad_y = darknet_letterbox_geometry(w, h, size, size)
            image = np.full((size, size, 3), 127, np.uint8)
            image[pad_y:pad_y + new_h, pad_x:pad_x + new_w] = cv2.resize(rgb, (new_w, new_h),
                                                                          interpolation=cv2.INTER_LINEAR)
            scale_x, scale_y = new_w / w, new_h / h
        self.net.setInput(cv2.dnn.blobFromImage(image, 1 / 255.0, (size, size), swapRB=False, crop=False))
        rows = np.concatenate([o.reshape(-1, o.shape[-1]) for o in self.net.forward(self.outputs)])
        scores = rows[:, 5:]  # cx, cy, w, h (relative), objectness, then scores already × objectness
        box_idx, cls_idx = np.nonzero(scores > self.conf)
        boxes, picked = [], scores[box_idx, cls_idx]
        for b in box_idx:
            cx, cy, bw, bh = rows[b, :4] * size
            boxes.append([cx - bw / 2, cy - bh / 2, bw, bh])
        keep = cv2.dnn.NMSBoxesBatched(boxes, picked.tolist(), cls_idx.tolist(), self.conf, self.nms) if boxes else []
        found = []
        for k in np.asarray(keep).reshape(-1):
            x, y, bw, bh = boxes[k]
            x1, y1 = (x - pad_x) / scale_x, (y - pad_y) / scale_y
            x2, y2 = (x + bw - pad_x) / scale_x, (y + bh - pad_y) / scale_y
            found.append({"label": self.names[int(cls_idx[k])], "class_id": int(cls_idx[k]), "score": float(picked[k]),
                          "box": [float(np.clip(x1, 0, w)), float(np.clip(y1, 0, h)),
                                  float(np.clip(x2, 0, w)), float(np.clip(y2, 0, h))]})
        return sorted(found, key=lambda d: -d["score"])
