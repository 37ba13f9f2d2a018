"""Realistic CRF inputs without a trained model: photographs plus degraded segmentations.

A network's logits are confident inside objects and blurry at their borders, and a CRF's job
is to snap the borders to image edges. `degraded_logits` imitates that from the photo itself:
segment it by colour (k-means), give each segment a class, one-hot the label map, blur it
(like bilinear upsampling from output stride 8) and add noise. Used by the tests and
benchmarks that compare `dense_crf` with pydensecrf.
"""

import numpy as np
import scipy.ndimage


def photo(name: str, height: int = 375, width: int = 500) -> np.ndarray:
    """A scikit-image sample photo (e.g. "astronaut", "coffee", "chelsea") as [H, W, 3] uint8.

    Centre-cropped to the aspect ratio, then resized with anti-aliasing.
    """
    import skimage.data
    import skimage.transform

    image = getattr(skimage.data, name)()[..., :3]
    rows, cols = image.shape[:2]
    if rows * width > cols * height:  # too tall: crop rows
        keep = round(cols * height / width)
        image = image[(rows - keep) // 2 : (rows - keep) // 2 + keep]
    else:
        keep = round(rows * width / height)
        image = image[:, (cols - keep) // 2 : (cols - keep) // 2 + keep]
    resized = skimage.transform.resize(image, (height, width), anti_aliasing=True)
    return np.clip(np.round(resized * 255), 0, 255).astype(np.uint8)


def colour_segments(image: np.ndarray, num_segments: int, seed: int = 0) -> np.ndarray:
    """[H, W] int32 k-means (in RGB) cluster index of each pixel of image [H, W, 3]."""
    rng = np.random.default_rng(seed)
    pixels = image.reshape(-1, 3).astype(np.float32)
    sample = pixels[rng.choice(len(pixels), min(len(pixels), 20000), replace=False)]
    centres = sample[rng.choice(len(sample), num_segments, replace=False)]
    for _ in range(20):
        nearest = np.argmin(((sample[:, None] - centres[None]) ** 2).sum(-1), axis=1)
        for k in range(num_segments):
            if np.any(nearest == k):
                centres[k] = sample[nearest == k].mean(0)
    labels = np.argmin(((pixels[:, None] - centres[None]) ** 2).sum(-1), axis=1)
    return labels.reshape(image.shape[:2]).astype(np.int32)


def segment_labels(
    image: np.ndarray, num_classes: int = 21, *, num_segments: int = 8, seed: int = 0
) -> np.ndarray:
    """[H, W] int32 clean label map: each colour segment of image [H, W, 3] gets a class.

    Segments get random classes, distinct if there are enough.
    """
    rng = np.random.default_rng(seed)
    classes = rng.choice(num_classes, num_segments, replace=num_segments > num_classes)
    return classes[colour_segments(image, num_segments, seed)].astype(np.int32)


def degraded_logits(
    image: np.ndarray,
    num_classes: int = 21,
    *,
    num_segments: int = 8,
    blur_sigma: float = 8.0,
    noise: float = 1.0,
    confidence: float = 4.0,
    seed: int = 0,
) -> np.ndarray:
    """[H, W, num_classes] float32 logits of a blurred, noisy `segment_labels` map.

    Args:
      image: [H, W, 3] uint8.
      num_classes: channels.
      num_segments: k-means clusters.
      blur_sigma: Gaussian blur of the one-hot map, in pixels.
      noise: standard deviation of the Gaussian noise added to the logits.
      confidence: logit of the segment's class before blurring.
      seed: seeds clustering, class choice and noise.
    """
    labels = segment_labels(image, num_classes, num_segments=num_segments, seed=seed)
    one_hot = np.eye(num_classes, dtype=np.float32)[labels]
    blurred = scipy.ndimage.gaussian_filter(one_hot, sigma=(blur_sigma, blur_sigma, 0))
    noise_rng = np.random.default_rng([seed, 1])
    logits = confidence * blurred + noise * noise_rng.standard_normal(one_hot.shape)
    return logits.astype(np.float32)
