"""Labelled image folders (one sub-folder per class) and ImageWoof (SPEC.md section 9.10).

Two layouts are read, as torchvision's ``ImageFolder`` reads them:

* ``PATH/<class>/<image>``: every image of a class in its folder; a seeded
  stratified share (``test_fraction``) becomes the validation set;
* ``PATH/train/<class>/<image>`` and ``PATH/val/<class>/<image>`` (``valid`` or
  ``test`` are accepted for ``val``): the split is given.

Images are decoded with PIL, converted to RGB, resized (bilinear, antialiased) to
``image_size x image_size`` and normalised like every dataset of the library
(``ToTensor()`` then mean 0.5, std 0.5: values in ``[-1, 1]``, SPEC.md section 1).
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ._dataset import Dataset
from ._files import default_root
from .subsets import stratified_indices

__all__ = [
    "IMAGE_EXTENSIONS", "IMAGEWOOF_URL", "IMAGEWOOF_FOLDER", "IMAGEWOOF_CLASSES",
    "list_image_folder", "read_images", "load_image_folder", "load_imagewoof", "write_image_folder",
]

#: File endings read as images (torchvision's ``IMG_EXTENSIONS``).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
#: fastai's ImageWoof archive, images resized so that their shorter side is 320 px.
IMAGEWOOF_URL = "https://s3.amazonaws.com/fast-ai-imageclas/imagewoof2-320.tgz"
#: The folder the archive unpacks into (``train/`` and ``val/`` inside, one folder per WordNet id).
IMAGEWOOF_FOLDER = "imagewoof2-320"
#: WordNet id of each ImageWoof class and its breed (fastai's imagenette README).
IMAGEWOOF_CLASSES = {
    "n02086240": "Shih-Tzu", "n02087394": "Rhodesian ridgeback", "n02088364": "beagle",
    "n02089973": "English foxhound", "n02093754": "Border terrier", "n02096294": "Australian terrier",
    "n02099601": "golden retriever", "n02105641": "Old English sheepdog", "n02111889": "Samoyed",
    "n02115641": "dingo",
}
_SPLIT_NAMES = {"train": ("train",), "val": ("val", "valid", "validation", "test")}


# ------------------------------------------------------------------ listing
def _class_folder_files(folder: Path) -> dict[str, list[Path]]:
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    return {c.name: sorted(f for f in c.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
            for c in classes}


def _check_classes(files: dict[str, list[Path]], folder: Path) -> None:
    if not files:
        raise ValueError(f"path={str(folder)!r} holds no class folders; put the images of each class in "
                         "a sub-folder named after the class (PATH/<class>/<image>)")
    empty = [name for name, found in files.items() if not found]
    if empty:
        raise ValueError(f"the class folder {str(folder / empty[0])!r} holds no image "
                         f"({', '.join(IMAGE_EXTENSIONS)}); add images or remove the folder")
    if len(files) < 2:
        raise ValueError(f"path={str(folder)!r} holds a single class ({next(iter(files))!r}); "
                         "detection needs at least two classes")


def list_image_folder(path) -> dict:
    """The image files of a labelled folder and their classes, without reading them.

    Parameters
    ----------
    path : str or path
        ``PATH/<class>/<image>``, or ``PATH/train/<class>/...`` with
        ``PATH/val/<class>/...`` (also ``valid`` or ``test``).

    Returns
    -------
    dict
        ``class_names`` (sorted folder names), ``train`` and ``val`` (each a pair
        ``(files, labels)``: a list of paths and an int64 array), ``val`` being None
        for the single-folder layout.

    Raises
    ------
    ValueError
        ``path`` is not a folder, holds no class folders, a class folder is empty,
        there is a single class, or the train and val folders name different classes.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ValueError(f"path={str(path)!r} is not a folder; give a folder with one sub-folder per class")
    subdirs = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    train_dir = next((subdirs[n] for n in _SPLIT_NAMES["train"] if n in subdirs), None)
    val_dir = next((subdirs[n] for n in _SPLIT_NAMES["val"] if n in subdirs), None)
    if train_dir is not None and val_dir is not None:
        train, val = _class_folder_files(train_dir), _class_folder_files(val_dir)
        _check_classes(train, train_dir)
        _check_classes(val, val_dir)
        if list(train) != list(val):
            raise ValueError(f"{str(train_dir)!r} and {str(val_dir)!r} name different classes "
                             f"({sorted(set(train) ^ set(val))} in one only); use the same class folders in both")
    else:
        train, val = _class_folder_files(root), None
        _check_classes(train, root)
    names = list(train)

    def flat(files):
        paths = [f for name in names for f in files[name]]
        labels = np.concatenate([np.full(len(files[name]), c, dtype=np.int64) for c, name in enumerate(names)])
        return paths, labels

    return {"class_names": names, "train": flat(train), "val": flat(val) if val is not None else None}


# ------------------------------------------------------------------ decoding
def read_images(files, *, image_size: int | None = None, progress: bool = True) -> torch.Tensor:
    """Decode image files into one normalised RGB tensor.

    Parameters
    ----------
    files : sequence of paths
    image_size : int, optional
        Side of the square every image is resized to (bilinear, antialiased). None
        keeps the files' size, which must then be the same for all.
    progress : bool
        Show a progress bar.

    Returns
    -------
    torch.Tensor
        float32 ``N x 3 x S x S`` in ``[-1, 1]``.

    Raises
    ------
    ValueError
        A file cannot be decoded as an image (the file is named), sizes differ with
        ``image_size=None``, or ``image_size`` is not a positive integer.
    """
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms import functional as TF

    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer))
                                   or image_size < 1):
        raise ValueError(f"image_size must be a positive integer or None, got {image_size!r}")
    images, first = [], None
    for f in tqdm(files, desc="images", unit="img", disable=not progress):
        try:
            with Image.open(f) as img:
                img = img.convert("RGB")
                if image_size is not None:
                    img = img.resize((int(image_size), int(image_size)), Image.BILINEAR, reducing_gap=None)
                x = TF.pil_to_tensor(img)
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise ValueError(f"the file {str(f)!r} cannot be read as an image ({exc}); fix or remove it") from None
        if first is None:
            first = (tuple(x.shape), f)
        elif tuple(x.shape) != first[0]:
            raise ValueError(f"{str(f)!r} is {tuple(x.shape)[1:]} but {str(first[1])!r} is {first[0][1:]}; "
                             "pass image_size= to resize every image to one size")
        images.append(x)
    if not images:
        raise ValueError("files is empty: there is no image to read")
    return torch.stack(images).float().div(255).sub(0.5).div(0.5)


def load_image_folder(path, *, image_size: int | None = None, test_fraction: float = 0.15, seed: int = 0,
                      progress: bool = True):
    """Load a labelled image folder as a :class:`glitchlib.data.Dataset`.

    Parameters
    ----------
    path : str or path
        ``PATH/<class>/<image>`` (split here) or ``PATH/train/...`` with ``PATH/val/...``.
    image_size : int, optional
        Side images are resized to (the model's ``input_size`` is a good choice; the
        model resizes again if it differs). None keeps the files' common size.
    test_fraction : float, default 0.15
        Share of every class drawn (stratified, seeded) into the validation set when
        the folder has no ``val/`` split; in ``(0, 0.5]``.
    seed : int, default 0
        Seed of that draw.
    progress : bool
        Progress bar while decoding.

    Returns
    -------
    Dataset
        With ``name="folder"``, ``class_names`` the folder names and ``train_files`` /
        ``test_files`` the path of every sample, in tensor order.

    Raises
    ------
    ValueError
        Bad layout (see :func:`list_image_folder`), an unreadable file (named), bad
        ``test_fraction``, ``seed`` or ``image_size``, or a class left with no
        training or no validation image.
    """
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float, np.number)) \
            or not 0 < float(test_fraction) <= 0.5:
        raise ValueError(f"test_fraction must lie in (0, 0.5], got {test_fraction!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    layout = list_image_folder(path)
    files, labels = layout["train"]
    if layout["val"] is None:
        test = stratified_indices(labels, fraction=float(test_fraction), seed=int(seed))
        train = np.setdiff1d(np.arange(len(files)), test)
        train_files, y_train = [files[i] for i in train], labels[train]
        test_files, y_test = [files[i] for i in test], labels[test]
    else:
        train_files, y_train = files, labels
        test_files, y_test = layout["val"]
    n_classes = len(layout["class_names"])
    for split, y in (("training", y_train), ("validation", y_test)):
        missing = sorted(set(range(n_classes)) - set(y.tolist()))
        if missing:
            raise ValueError(f"class {layout['class_names'][missing[0]]!r} has no {split} image; "
                             "add images to it (or raise test_fraction)")
    x = read_images(train_files + test_files, image_size=image_size, progress=progress)
    n = len(train_files)
    return Dataset(name="folder", x_train=x[:n], y_train=torch.from_numpy(y_train), x_test=x[n:],
                   y_test=torch.from_numpy(y_test), n_classes=n_classes, class_names=layout["class_names"],
                   source=str(Path(path).expanduser().resolve()), train_index=np.arange(n),
                   test_index=np.arange(len(test_files)), train_files=[str(f) for f in train_files],
                   test_files=[str(f) for f in test_files])


def write_image_folder(x, labels, *, class_names, path) -> list[str]:
    """Write normalised images as PNG files into ``path/<class name>/<index>.png``.

    The inverse of :func:`load_image_folder` for building examples and tests: each
    image goes into the folder of the label it is given, so passing noisy labels
    (from :mod:`glitchlib.glitches`) writes a folder with misfiled images.

    Parameters
    ----------
    x : torch.Tensor
        float ``N x C x H x W`` in ``[-1, 1]`` (C = 1 or 3).
    labels : array-like of int, shape (N,)
        Folder of every image (an index into ``class_names``).
    class_names : sequence of str
        Folder names; names with ``/`` are written with ``-`` instead.
    path : str or path
        Created if missing; existing files of the same name are replaced.

    Returns
    -------
    list of str
        The file of every image, in input order.
    """
    from PIL import Image

    labels = np.asarray(labels)
    if len(labels) != len(x):
        raise ValueError(f"labels has {len(labels)} entries for {len(x)} images; give one label per image")
    root = Path(path)
    names = [str(n).replace("/", "-") for n in class_names]
    pixels = (x.detach().cpu().float().mul(0.5).add(0.5).clamp(0, 1) * 255).round().to(torch.uint8)
    files = []
    for i, (image, label) in enumerate(zip(pixels, labels.tolist())):
        folder = root / names[label]
        folder.mkdir(parents=True, exist_ok=True)
        array = image.permute(1, 2, 0).numpy()
        file = folder / f"{i:05d}.png"
        Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).save(file)
        files.append(str(file))
    return files


# ------------------------------------------------------------------ ImageWoof
def _imagewoof_missing_message(root: Path) -> str:
    """What to place where when ImageWoof is not on disk."""
    return (f"ImageWoof is not under {str(root)!r}: download {IMAGEWOOF_URL}, unpack it there "
            f"(giving {str(root / IMAGEWOOF_FOLDER)}/train/<wnid>/*.JPEG and .../val/...), "
            "or pass download=True on a machine with internet")


def _download_imagewoof(root: Path, url: str) -> None:
    import urllib.request

    root.mkdir(parents=True, exist_ok=True)
    archive = root / (IMAGEWOOF_FOLDER + ".tgz")
    partial = archive.with_suffix(".tgz.part")
    try:
        with urllib.request.urlopen(url, timeout=30) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc="imagewoof") as bar:
                for block in iter(lambda: response.read(1 << 20), b""):
                    out.write(block)
                    bar.update(len(block))
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"downloading ImageWoof from {url} failed ({exc}). "
                           + _imagewoof_missing_message(root)) from None
    partial.replace(archive)
    with tarfile.open(archive) as tar:
        tar.extractall(root, filter="data")
    archive.unlink()


def _imagewoof_split(folder, *, subset: float, seed: int) -> tuple[dict, dict]:
    """The layout of an unpacked ImageWoof folder and the indices of the stratified subset of each split.

    Reads file names only, no image: ``(layout, {"train": index, "val": index})``
    with ``layout`` as :func:`list_image_folder` returns it. :func:`load_imagewoof`
    decodes these images; the runnability check counts their labels.
    """
    layout = list_image_folder(folder)
    index = {split: stratified_indices(layout[split][1], fraction=float(subset), seed=seed) if subset < 1
             else np.arange(len(layout[split][0])) for split in ("train", "val")}
    return layout, index


def load_imagewoof(*, root=None, download: bool = False, image_size: int = 224, subset: float = 0.1,
                   seed: int = 0, url: str = IMAGEWOOF_URL, progress: bool = True):
    """ImageWoof (ten dog breeds of ImageNet, fastai's 320 px release), SPEC.md section 9.10.

    Parameters
    ----------
    root : str or path, optional
        Folder holding ``imagewoof2-320/`` (default ``~/.cache/glitchlib/data``).
    download : bool
        Fetch and unpack the archive (about 330 MB) into ``root`` when missing.
    image_size : int, default 224
        Side every image is resized to (the paper's 224).
    subset : float, default 0.1
        Stratified share of each official split kept, drawn with ``seed`` (the
        paper's protocol keeps 10 %); 1 keeps all (about 13,000 images, 7.8 GB as
        float32 at 224 px).
    seed : int
    url : str
        Archive address (a mirror can be given).
    progress : bool

    Returns
    -------
    Dataset
        ``name="imagewoof"``, class names the breeds.

    Raises
    ------
    FileNotFoundError
        Not on disk and ``download`` is False (the message says what to place where).
    RuntimeError
        The download failed (no internet): the message says what to place where.
    """
    if isinstance(subset, bool) or not isinstance(subset, (int, float, np.number)) or not 0 < subset <= 1:
        raise ValueError(f"subset must lie in (0, 1], got {subset!r}")
    root = Path(root).expanduser() if root is not None else default_root()
    folder = root / IMAGEWOOF_FOLDER
    if not (folder / "train").is_dir():
        if not download:
            raise FileNotFoundError(_imagewoof_missing_message(root))
        _download_imagewoof(root, url)
    layout, split_index = _imagewoof_split(folder, subset=subset, seed=seed)
    parts = {}
    for split in ("train", "val"):
        files, labels = layout[split]
        index = split_index[split]
        chosen = [files[i] for i in index]
        parts[split] = (read_images(chosen, image_size=image_size, progress=progress),
                        torch.from_numpy(labels[index]), index, [str(f) for f in chosen])
    return Dataset(name="imagewoof", x_train=parts["train"][0], y_train=parts["train"][1], x_test=parts["val"][0],
                   y_test=parts["val"][1], n_classes=len(layout["class_names"]),
                   class_names=[IMAGEWOOF_CLASSES.get(c, c) for c in layout["class_names"]],
                   source=f"{folder} (subset={subset:g}, seed={seed})", train_index=parts["train"][2],
                   test_index=parts["val"][2], train_files=parts["train"][3], test_files=parts["val"][3])
