"""The four built-in handlers end to end: real archives, one real server, real inputs.

Every example archive is built once (``examples/build_all.py``, which trains the
digits CNN, the shapes U-Net and the news classifier and fetches the MTCNN weights),
then one server serves them all; the tests send real images and text over HTTP and
check what the models answer: accuracy, IoU, boxes, shapes and error messages.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import math
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.conftest import ROOT, RunningServer, start_server, stop_server
from torchwire.archive import open_archive, read_manifest, write_archive
from torchwire.handlers.tokens import basic_english, clean

EXAMPLES = ROOT / "examples"
# The astronaut's face in scikit-image's astronaut.png, drawn by eye on the photo.
ASTRONAUT_FACE = (178.0, 66.0, 268.0, 172.0)
MODELS = ["digits_cnn", "digits_nolabels", "shapes", "faces", "faces_small", "news",
          "resnet18", "fasterrcnn", "deeplabv3"]


# -- fixtures ----------------------------------------------------------------------------
def variant(store: Path, source: str, name: str, tmp: Path,
            drop: tuple[str, ...] = (), add: dict[str, str] | None = None) -> None:
    """Re-archive ``source`` as model ``name``, without ``drop`` and with ``add`` files."""
    model_dir = open_archive(store / f"{source}.mar", tmp / name)
    manifest = read_manifest(model_dir)
    files = {p.name: p for p in model_dir.iterdir() if p.is_file() and p.name not in drop}
    for filename, text in (add or {}).items():
        (tmp / filename).write_text(text)
        files[filename] = tmp / filename
        manifest = replace(manifest, config_file=filename)
    write_archive(replace(manifest, model_name=name), files, store, force=True)


@pytest.fixture(scope="session")
def handler_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("handler-store")
    subprocess.run([sys.executable, str(EXAMPLES / "build_all.py"), "--out", str(store)],
                   check=True, stdout=subprocess.DEVNULL)
    tmp = tmp_path_factory.mktemp("variants")
    variant(store, "digits_cnn", "digits_nolabels", tmp, drop=("index_to_name.json",))
    variant(store, "faces", "faces_small", tmp,
            add={"model-config.yaml": "handler:\n  resize: 256\n  threshold: 0.9\n"})
    return store


@pytest.fixture(scope="session")
def handlers_server(handler_store: Path,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    tmp = tmp_path_factory.mktemp("handlers-server")
    batching = {"batchSize": 8, "maxBatchDelay": 50}
    config = {"models": json.dumps({m: {"1.0": batching} for m in MODELS}),
              "max_request_size": 20_000_000, "job_queue_size": 1000}
    running = start_server(tmp, handler_store, [f"{m}={m}.mar" for m in MODELS], config)
    yield running
    stop_server(running)


@pytest.fixture(scope="session")
def client(handlers_server: RunningServer) -> Iterator[httpx.Client]:
    limits = httpx.Limits(max_connections=16)
    with httpx.Client(base_url=handlers_server.url, timeout=120, limits=limits) as c:
        yield c


@pytest.fixture(scope="session")
def scenes() -> ModuleType:
    spec = importlib.util.spec_from_file_location("shapes_scenes", EXAMPLES / "shapes" /
                                                  "scenes.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def labelled(store: Path, sample_dir: str) -> list[tuple[Path, int]]:
    paths = sorted((store / "samples" / sample_dir).iterdir())
    return [(p, int(p.stem.split("label")[1])) for p in paths]


@pytest.fixture(scope="session")
def digits(handler_store: Path) -> list[tuple[Path, int]]:
    return labelled(handler_store, "digits_cnn")


# -- helpers -----------------------------------------------------------------------------
def png(image: Image.Image | np.ndarray) -> bytes:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def parallel(fn: Callable[[Any], Any], items: list[Any], workers: int = 16) -> list[Any]:
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, items))


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def assert_400(response: httpx.Response, words: str) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == 400 and words in body["message"], body


def top1(answer: dict[str, float]) -> str:
    return next(iter(answer))


def iou(a: list[float] | tuple[float, ...], b: list[float] | tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area


def faces_of(answer: list[dict[str, Any]]) -> list[list[float]]:
    return [d["face"] for d in answer if "face" in d]


def astronaut() -> np.ndarray:
    from skimage import data

    return np.asarray(data.astronaut())


NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


# -- image_classifier: the digits CNN ------------------------------------------------------
def test_digits_accuracy_over_http_under_concurrency(
    client: httpx.Client, digits: list[tuple[Path, int]]
) -> None:
    answers = parallel(lambda d: ok(client.post("/predictions/digits_cnn",
                                                content=d[0].read_bytes())), digits)
    correct = sum(top1(a) == NAMES[label] for a, (_, label) in zip(answers, digits, strict=True))
    accuracy = correct / len(digits)
    assert len(digits) >= 400
    assert accuracy >= 0.97, f"held-out accuracy over HTTP {accuracy:.3f}"
    for answer in answers:
        assert len(answer) == 3  # topk: 3 in the archive's model-config.yaml
        assert list(answer.values()) == sorted(answer.values(), reverse=True)


def test_digits_multipart_data_field_is_one_answer(
    client: httpx.Client, digits: list[tuple[Path, int]]
) -> None:
    path, label = digits[0]
    answer = ok(client.post("/predictions/digits_cnn", files={"data": path.read_bytes()}))
    assert isinstance(answer, dict) and top1(answer) == NAMES[label]


def test_digits_multipart_several_files_answer_in_order(
    client: httpx.Client, digits: list[tuple[Path, int]]
) -> None:
    chosen = digits[:5]
    files = {f"img{i}": (p.name, p.read_bytes(), "image/png") for i, (p, _) in enumerate(chosen)}
    answers = ok(client.post("/predictions/digits_cnn", files=files))
    assert isinstance(answers, list) and len(answers) == 5
    singles = [ok(client.post("/predictions/digits_cnn", content=p.read_bytes()))
               for p, _ in chosen]
    for answer, single in zip(answers, singles, strict=True):
        assert top1(answer) == top1(single)
        assert answer[top1(answer)] == pytest.approx(single[top1(single)], abs=1e-5)


def test_digits_several_files_one_corrupt_names_the_field(
    client: httpx.Client, digits: list[tuple[Path, int]]
) -> None:
    files = {"first": digits[0][0].read_bytes(), "second": b"\x89PNG\r\n\x1a\nbroken"}
    assert_400(client.post("/predictions/digits_cnn", files=files), "field 'second'")


def test_digits_kserve_v1(client: httpx.Client, digits: list[tuple[Path, int]]) -> None:
    chosen = digits[:6]
    instances: list[Any] = [{"data": base64.b64encode(p.read_bytes()).decode()}
                            for p, _ in chosen[:3]]
    instances += [{"data": {"b64": base64.b64encode(p.read_bytes()).decode()}}
                  for p, _ in chosen[3:]]
    body = ok(client.post("/v1/models/digits_cnn:predict", json={"instances": instances}))
    assert [top1(p) for p in body["predictions"]] == [NAMES[label] for _, label in chosen]


def test_any_image_mode_is_accepted(client: httpx.Client, digits: list[tuple[Path, int]]) -> None:
    path, label = digits[1]
    gray = Image.open(path).convert("L")
    variants = {
        "rgb-jpeg": (gray.convert("RGB"), "JPEG"),
        "rgba-png": (gray.convert("RGBA"), "PNG"),
        "palette-png": (gray.convert("P"), "PNG"),
        "big-png": (gray.resize((64, 64), Image.Resampling.NEAREST), "PNG"),
    }
    for name, (image, fmt) in variants.items():
        buf = io.BytesIO()
        image.save(buf, fmt, **({"quality": 100} if fmt == "JPEG" else {}))
        answer = ok(client.post("/predictions/digits_cnn", content=buf.getvalue()))
        assert top1(answer) == NAMES[label], name


def test_without_index_to_name_classes_are_numbers(
    client: httpx.Client, digits: list[tuple[Path, int]]
) -> None:
    answers = [ok(client.post("/predictions/digits_nolabels", content=p.read_bytes()))
               for p, _ in digits[:10]]
    assert [top1(a) for a in answers] == [str(label) for _, label in digits[:10]]
    assert all(set(a) <= {str(i) for i in range(10)} for a in answers)


def test_batch_of_eight_with_one_corrupt_image(
    client: httpx.Client, digits: list[tuple[Path, int]]
) -> None:
    bodies = [p.read_bytes() for p, _ in digits[:8]]
    bodies[3] = bodies[3][: len(bodies[3]) // 2]  # truncated PNG
    responses = parallel(lambda b: client.post("/predictions/digits_cnn", content=b), bodies, 8)
    statuses = [r.status_code for r in responses]
    assert statuses == [200, 200, 200, 400, 200, 200, 200, 200]
    assert_400(responses[3], "not a decodable image")
    for response, (_, label) in zip(responses, digits[:8], strict=True):
        if response.status_code == 200:
            assert top1(response.json()) == NAMES[label]


def test_image_explanation_is_shaped_like_the_input(
    client: httpx.Client, digits: list[tuple[Path, int]]
) -> None:
    path, _ = digits[0]
    attributions = np.array(ok(client.post("/explanations/digits_cnn",
                                           content=path.read_bytes())))
    assert attributions.shape == (1, 8, 8)
    assert np.isfinite(attributions).all() and np.abs(attributions).sum() > 0
    b64 = base64.b64encode(path.read_bytes()).decode()
    body = ok(client.post("/v1/models/digits_cnn:explain",
                          json={"instances": [{"data": b64}, {"data": b64, "target": 3}]}))
    first, second = (np.array(e) for e in body["explanations"])
    assert first.shape == second.shape == (1, 8, 8)
    assert np.allclose(first, attributions, atol=1e-4)
    assert not np.allclose(first, second)  # another target, other attributions


def test_explanation_target_out_of_range_is_400(
    client: httpx.Client, digits: list[tuple[Path, int]]
) -> None:
    response = client.post("/explanations/digits_cnn?target=12",
                           content=digits[0][0].read_bytes())
    assert_400(response, "target 12 is not a class")


# -- image_segmenter: the shapes U-Net -----------------------------------------------------
def test_shapes_mean_iou_on_fresh_scenes(client: httpx.Client, scenes: ModuleType) -> None:
    images, masks = scenes.scenes(seed=1234, count=48)
    answers = parallel(lambda im: ok(client.post("/predictions/shapes", content=png(im))),
                       list(images))
    probs = np.array(answers)
    assert probs.shape == (48, len(scenes.CLASSES), 32, 32)  # [N, CL, H, W]
    assert np.allclose(probs.sum(axis=1), 1.0, atol=2e-3)
    score = scenes.mean_iou(probs.argmax(axis=1), masks)
    assert score >= 0.9, f"mean IoU over HTTP {score:.3f}"


def test_shapes_multipart_and_kserve(client: httpx.Client, scenes: ModuleType) -> None:
    images, masks = scenes.scenes(seed=99, count=3)
    files = {f"scene{i}": png(im) for i, im in enumerate(images)}
    several = np.array(ok(client.post("/predictions/shapes", files=files)))
    instances = [{"data": base64.b64encode(png(im)).decode()} for im in images]
    kserve = np.array(ok(client.post("/v1/models/shapes:predict",
                                     json={"instances": instances}))["predictions"])
    assert several.shape == kserve.shape == (3, len(scenes.CLASSES), 32, 32)
    assert np.allclose(several, kserve, atol=1e-4)
    assert scenes.mean_iou(several.argmax(axis=1), masks) >= 0.8


def test_segmenter_has_no_explanations(client: httpx.Client, scenes: ModuleType) -> None:
    images, _ = scenes.scenes(seed=5, count=1)
    response = client.post("/explanations/shapes", content=png(images[0]))
    assert response.status_code == 501
    assert "does not support explanations" in response.json()["message"]


# -- object_detector: MTCNN with pretrained weights ----------------------------------------
def test_faces_finds_the_astronaut(client: httpx.Client, handler_store: Path) -> None:
    sample = handler_store / "samples" / "faces" / "astronaut.png"
    found = faces_of(ok(client.post("/predictions/faces", content=sample.read_bytes())))
    assert len(found) == 1
    assert iou(found[0], ASTRONAUT_FACE) >= 0.5, found


def test_faces_no_face_in_coffee(client: httpx.Client, handler_store: Path) -> None:
    sample = handler_store / "samples" / "faces" / "coffee.png"
    assert ok(client.post("/predictions/faces", content=sample.read_bytes())) == []


def test_faces_boxes_follow_each_image_under_concurrency(client: httpx.Client) -> None:
    photo = astronaut()
    half = np.asarray(Image.fromarray(photo).resize((256, 256)))
    mirrored = photo[:, ::-1].copy()
    x1, y1, x2, y2 = ASTRONAUT_FACE
    cases = [(photo, ASTRONAUT_FACE), (half, (x1 / 2, y1 / 2, x2 / 2, y2 / 2)),
             (mirrored, (512 - x2, y1, 512 - x1, y2))] * 3
    answers = parallel(lambda c: ok(client.post("/predictions/faces", content=png(c[0]))),
                       cases, 9)
    for answer, (_, truth) in zip(answers, cases, strict=True):
        found = faces_of(answer)
        assert len(found) == 1 and iou(found[0], truth) >= 0.5, (found, truth)


def test_faces_resize_in_config_is_undone_on_boxes(client: httpx.Client) -> None:
    found = faces_of(ok(client.post("/predictions/faces_small", content=png(astronaut()))))
    assert len(found) == 1 and iou(found[0], ASTRONAUT_FACE) >= 0.5, found


def test_faces_multipart_and_kserve(client: httpx.Client, handler_store: Path) -> None:
    samples = handler_store / "samples" / "faces"
    face, coffee = (samples / "astronaut.png").read_bytes(), (samples / "coffee.png").read_bytes()
    several = ok(client.post("/predictions/faces", files={"a": face, "b": coffee}))
    assert len(several) == 2 and len(faces_of(several[0])) == 1 and several[1] == []
    instances = [{"data": base64.b64encode(face).decode()}]
    body = ok(client.post("/v1/models/faces:predict", json={"instances": instances}))
    (found,) = faces_of(body["predictions"][0])
    assert iou(found, ASTRONAUT_FACE) >= 0.5


def test_detector_has_no_explanations(client: httpx.Client, handler_store: Path) -> None:
    sample = handler_store / "samples" / "faces" / "astronaut.png"
    response = client.post("/v1/models/faces:explain",
                           json={"instances": [{"data": base64.b64encode(
                               sample.read_bytes()).decode()}]})
    assert response.status_code == 501
    assert "does not support explanations" in response.json()["message"]


# -- text_classifier: the news topics -------------------------------------------------------
TOPICS = ["World", "Sports", "Business", "Sci/Tech"]


@pytest.fixture(scope="session")
def news(handler_store: Path) -> list[tuple[Path, int]]:
    return labelled(handler_store, "news")


def test_news_accuracy_over_http_as_text_files(
    client: httpx.Client, news: list[tuple[Path, int]]
) -> None:
    def classify(sample: tuple[Path, int]) -> Any:
        path, _ = sample
        files = {"data": (path.name, path.read_bytes(), "text/plain")}
        return ok(client.post("/predictions/news", files=files))

    answers = parallel(classify, news)
    assert len(news) == 100
    accuracy = sum(top1(a) == TOPICS[y] for a, (_, y) in zip(answers, news, strict=True)) / 100
    assert accuracy >= 0.85, f"held-out accuracy over HTTP {accuracy:.2f}"
    for answer in answers:
        assert set(answer) == set(TOPICS)
        assert list(answer.values()) == sorted(answer.values(), reverse=True)
        assert sum(answer.values()) == pytest.approx(1.0, abs=1e-5)


def test_news_raw_body_json_and_kserve_agree(client: httpx.Client) -> None:
    text = "The goalkeeper saved two penalties as the club won the cup final"
    raw = ok(client.post("/predictions/news", content=text.encode(),
                         headers={"content-type": "text/plain"}))
    as_json = ok(client.post("/predictions/news", json={"text": text}))
    kserve = ok(client.post("/v1/models/news:predict",
                            json={"instances": [text, {"data": text}]}))["predictions"]
    assert top1(raw) == "Sports"
    # The two KServe instances may share a batch with each other: float32 sums over a
    # batch of two differ from a batch of one in the last bits, so compare to 1e-5.
    for other in (as_json, *kserve):
        assert other == pytest.approx(raw, rel=1e-5, abs=1e-9)


def test_news_multipart_several_texts(client: httpx.Client) -> None:
    files = {"a": b"Shares fell after the bank cut its profit forecast",
             "b": b"The space probe sent back pictures of the planet's moons"}
    answers = ok(client.post("/predictions/news", files=files))
    assert [top1(a) for a in answers] == ["Business", "Sci/Tech"]


def test_text_explanation_has_one_importance_per_word(client: httpx.Client) -> None:
    text = "Rebels seized the airport as peace talks collapsed in the capital"
    explanation = ok(client.post("/explanations/news", content=text.encode()))
    assert explanation["words"] == basic_english(clean(text))
    assert len(explanation["importances"]) == len(explanation["words"])
    assert all(math.isfinite(v) for v in explanation["importances"])
    assert TOPICS[explanation["target"]] == "World"
    body = ok(client.post("/v1/models/news:explain", json={"instances": [{"data": text}]}))
    assert body["explanations"][0]["importances"] == pytest.approx(explanation["importances"],
                                                                   abs=1e-4)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"caf\xe9 au lait \xff\xfe", "not valid UTF-8 text"),
        (png(np.zeros((8, 8, 3), np.uint8)), "is a PNG image, but this model expects UTF-8 text"),
        (b"   \n\t ", "empty"),
        (b"!!! ??? ...", "no words"),
    ],
    ids=["non-utf8", "image", "blank", "no-words"],
)
def test_news_bad_input_is_400(client: httpx.Client, content: bytes, words: str) -> None:
    assert_400(client.post("/predictions/news", content=content), words)


# -- bad images --------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["digits_cnn", "shapes", "faces"])
def test_bad_images_are_400(client: httpx.Client, model: str) -> None:
    assert_400(client.post(f"/predictions/{model}", content=b"GIF89a not really"),
               "not a decodable image")
    assert_400(client.post(f"/predictions/{model}", content=b""), "empty")
    assert_400(client.post(f"/predictions/{model}", files={"data": ("x.png", b"", "image/png")}),
               "empty")
    assert_400(client.post(f"/predictions/{model}", content=b"plain words, not an image",
                           headers={"content-type": "text/plain"}), "base64")


# -- torchvision architectures with random weights -------------------------------------------
def test_resnet18_answers_imagenet_names(client: httpx.Client) -> None:
    from torchvision.models import ResNet18_Weights

    categories = set(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])
    photo = png(astronaut())
    answer = ok(client.post("/predictions/resnet18", content=photo))
    assert len(answer) == 5 and set(answer) <= categories
    several = ok(client.post("/predictions/resnet18", files={"a": photo, "b": photo}))
    assert several[0] == pytest.approx(answer) and several[1] == pytest.approx(answer)


def test_fasterrcnn_answers_coco_names_inside_the_image(client: httpx.Client) -> None:
    from torchvision.models.detection import FasterRCNN_MobileNet_V3_Large_320_FPN_Weights

    categories = set(FasterRCNN_MobileNet_V3_Large_320_FPN_Weights.COCO_V1.meta["categories"])
    image = np.asarray(Image.fromarray(astronaut()).resize((300, 200)))
    detections = ok(client.post("/predictions/fasterrcnn", content=png(image)))
    assert detections
    for detection in detections:
        score = detection.pop("score")
        ((name, box),) = detection.items()
        assert name in categories and 0 <= score <= 1
        assert 0 <= box[0] <= box[2] <= 300 and 0 <= box[1] <= box[3] <= 200


def test_deeplabv3_answers_voc_classes_per_pixel(client: httpx.Client) -> None:
    image = np.asarray(Image.fromarray(astronaut()).resize((160, 120)))
    probs = np.array(ok(client.post("/predictions/deeplabv3", content=png(image))))
    assert probs.shape == (21, 96, 128)  # resize: 96 on the shorter side
    assert np.allclose(probs.sum(axis=0), 1.0, atol=2e-3)


# -- request kind: a protocol field, never a client header -------------------------------
def test_explain_header_on_predictions_still_predicts(
    client: httpx.Client, digits: list[tuple[Path, int]]
) -> None:
    image = digits[0][0].read_bytes()
    plain = ok(client.post("/predictions/digits_cnn", content=image))
    sneaky = ok(client.post("/predictions/digits_cnn", content=image,
                            headers={"explain": "True", "describe": "True"}))
    assert sneaky == plain and top1(sneaky) in NAMES


@pytest.mark.parametrize("model", ["digits_cnn", "news"])
def test_customized_describe_of_a_builtin_handler(handlers_server: RunningServer,
                                                  model: str) -> None:
    with handlers_server.management() as mgmt:
        response = mgmt.get(f"/models/{model}", params={"customized": "true"})
    assert response.status_code == 200, response.text
    (doc,) = response.json()
    assert doc["modelName"] == model and "customizedMetadata" in doc
