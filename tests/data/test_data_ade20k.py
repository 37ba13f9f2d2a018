"""ade20k_scene_parsing builder on tiny ADEChallengeData2016 trees the tests write: exact
round trip against the files, the label convention, the class table against the official class
list, and clear errors for unpaired or malformed files."""

import logging
import shutil
import socket
import zipfile

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from jaxseg.data import get_dataset_info
from jaxseg.data.builders import ade20k, downloads
from jaxseg.data.errors import DataError, DatasetNotFoundError
from jaxseg.data.label_tables import ADE20K_CLASS_NAMES

# objectInfo150.txt as shipped in ADEChallengeData2016.zip (CSAILVision/sceneparsing, same
# file): tab-separated, synonyms joined by ", ", trailing spaces (rows 8, 9, 22-27, 128) kept.
OBJECT_INFO_150_TXT_ROWS = (
    "Idx\tRatio\tTrain\tVal\tName",
    "1\t0.1576\t11664\t1172\twall",
    "2\t0.1072\t6046\t612\tbuilding, edifice",
    "3\t0.0878\t8265\t796\tsky",
    "4\t0.0621\t9336\t917\tfloor, flooring",
    "5\t0.0480\t6678\t641\ttree",
    "6\t0.0450\t6604\t643\tceiling",
    "7\t0.0398\t4023\t408\troad, route",
    "8\t0.0231\t1906\t199\tbed ",
    "9\t0.0198\t4688\t460\twindowpane, window ",
    "10\t0.0183\t2423\t225\tgrass",
    "11\t0.0181\t2874\t294\tcabinet",
    "12\t0.0166\t3068\t310\tsidewalk, pavement",
    "13\t0.0160\t5075\t526\tperson, individual, someone, somebody, mortal, soul",
    "14\t0.0151\t1804\t190\tearth, ground",
    "15\t0.0118\t6666\t796\tdoor, double door",
    "16\t0.0110\t4269\t411\ttable",
    "17\t0.0109\t1691\t160\tmountain, mount",
    "18\t0.0104\t3999\t441\tplant, flora, plant life",
    "19\t0.0104\t2149\t217\tcurtain, drape, drapery, mantle, pall",
    "20\t0.0103\t3261\t318\tchair",
    "21\t0.0098\t3164\t306\tcar, auto, automobile, machine, motorcar",
    "22 \t0.0074\t709\t75\twater",
    "23\t0.0067\t3296\t315\tpainting, picture",
    "24 \t0.0065\t1191\t106\tsofa, couch, lounge",
    "25 \t0.0061\t1516\t162\tshelf",
    "26 \t0.0060\t667\t69\thouse",
    "27 \t0.0053\t651\t57\tsea",
    "28\t0.0052\t1847\t224\tmirror",
    "29\t0.0046\t1158\t128\trug, carpet, carpeting",
    "30\t0.0044\t480\t44\tfield",
    "31\t0.0044\t1172\t98\tarmchair",
    "32\t0.0044\t1292\t184\tseat",
    "33\t0.0033\t1386\t138\tfence, fencing",
    "34\t0.0031\t698\t61\tdesk",
    "35\t0.0030\t781\t73\trock, stone",
    "36\t0.0027\t380\t43\twardrobe, closet, press",
    "37\t0.0026\t3089\t302\tlamp",
    "38\t0.0024\t404\t37\tbathtub, bathing tub, bath, tub",
    "39\t0.0024\t804\t99\trailing, rail",
    "40\t0.0023\t1453\t153\tcushion",
    "41\t0.0023\t411\t37\tbase, pedestal, stand",
    "42\t0.0022\t1440\t162\tbox",
    "43\t0.0022\t800\t77\tcolumn, pillar",
    "44\t0.0020\t2650\t298\tsignboard, sign",
    "45\t0.0019\t549\t46\tchest of drawers, chest, bureau, dresser",
    "46\t0.0019\t367\t36\tcounter",
    "47\t0.0018\t311\t30\tsand",
    "48\t0.0018\t1181\t122\tsink",
    "49\t0.0018\t287\t23\tskyscraper",
    "50\t0.0018\t468\t38\tfireplace, hearth, open fireplace",
    "51\t0.0018\t402\t43\trefrigerator, icebox",
    "52\t0.0018\t130\t12\tgrandstand, covered stand",
    "53\t0.0018\t561\t64\tpath",
    "54\t0.0017\t880\t102\tstairs, steps",
    "55\t0.0017\t86\t12\trunway",
    "56\t0.0017\t172\t11\tcase, display case, showcase, vitrine",
    "57\t0.0017\t198\t18\tpool table, billiard table, snooker table",
    "58\t0.0017\t930\t109\tpillow",
    "59\t0.0015\t139\t18\tscreen door, screen",
    "60\t0.0015\t564\t52\tstairway, staircase",
    "61\t0.0015\t320\t26\triver",
    "62\t0.0015\t261\t29\tbridge, span",
    "63\t0.0014\t275\t22\tbookcase",
    "64\t0.0014\t335\t60\tblind, screen",
    "65\t0.0014\t792\t75\tcoffee table, cocktail table",
    "66\t0.0014\t395\t49\ttoilet, can, commode, crapper, pot, potty, stool, throne",
    "67\t0.0014\t1309\t138\tflower",
    "68\t0.0013\t1112\t113\tbook",
    "69\t0.0013\t266\t27\thill",
    "70\t0.0013\t659\t66\tbench",
    "71\t0.0012\t331\t31\tcountertop",
    "72\t0.0012\t531\t56\tstove, kitchen stove, range, kitchen range, cooking stove",
    "73\t0.0012\t369\t36\tpalm, palm tree",
    "74\t0.0012\t144\t9\tkitchen island",
    "75\t0.0011\t265\t29\tcomputer, computing machine, computing device, data processor, "
    "electronic computer, information processing system",
    "76\t0.0010\t324\t33\tswivel chair",
    "77\t0.0009\t304\t27\tboat",
    "78\t0.0009\t170\t20\tbar",
    "79\t0.0009\t68\t6\tarcade machine",
    "80\t0.0009\t65\t8\thovel, hut, hutch, shack, shanty",
    "81\t0.0009\t248\t25\tbus, autobus, coach, charabanc, double-decker, jitney, motorbus, "
    "motorcoach, omnibus, passenger vehicle",
    "82\t0.0008\t492\t49\ttowel",
    "83\t0.0008\t2510\t269\tlight, light source",
    "84\t0.0008\t440\t39\ttruck, motortruck",
    "85\t0.0008\t147\t18\ttower",
    "86\t0.0008\t583\t56\tchandelier, pendant, pendent",
    "87\t0.0007\t533\t61\tawning, sunshade, sunblind",
    "88\t0.0007\t1989\t239\tstreetlight, street lamp",
    "89\t0.0007\t71\t5\tbooth, cubicle, stall, kiosk",
    "90\t0.0007\t618\t53\ttelevision, television receiver, television set, tv, tv set, "
    "idiot box, boob tube, telly, goggle box",
    "91\t0.0007\t135\t12\tairplane, aeroplane, plane",
    "92\t0.0007\t83\t5\tdirt track",
    "93\t0.0007\t178\t17\tapparel, wearing apparel, dress, clothes",
    "94\t0.0006\t1003\t104\tpole",
    "95\t0.0006\t182\t12\tland, ground, soil",
    "96\t0.0006\t452\t50\tbannister, banister, balustrade, balusters, handrail",
    "97\t0.0006\t42\t6\tescalator, moving staircase, moving stairway",
    "98\t0.0006\t307\t31\tottoman, pouf, pouffe, puff, hassock",
    "99\t0.0006\t965\t114\tbottle",
    "100\t0.0006\t117\t13\tbuffet, counter, sideboard",
    "101\t0.0006\t354\t35\tposter, posting, placard, notice, bill, card",
    "102\t0.0006\t108\t9\tstage",
    "103\t0.0006\t557\t55\tvan",
    "104\t0.0006\t52\t4\tship",
    "105\t0.0005\t99\t5\tfountain",
    "106\t0.0005\t57\t4\tconveyer belt, conveyor belt, conveyer, conveyor, transporter",
    "107\t0.0005\t292\t31\tcanopy",
    "108\t0.0005\t77\t9\twasher, automatic washer, washing machine",
    "109\t0.0005\t340\t38\tplaything, toy",
    "110\t0.0005\t66\t3\tswimming pool, swimming bath, natatorium",
    "111\t0.0005\t465\t49\tstool",
    "112\t0.0005\t50\t4\tbarrel, cask",
    "113\t0.0005\t622\t75\tbasket, handbasket",
    "114\t0.0005\t80\t9\twaterfall, falls",
    "115\t0.0005\t59\t3\ttent, collapsible shelter",
    "116\t0.0005\t531\t72\tbag",
    "117\t0.0005\t282\t30\tminibike, motorbike",
    "118\t0.0005\t73\t7\tcradle",
    "119\t0.0005\t435\t44\toven",
    "120\t0.0005\t136\t25\tball",
    "121\t0.0005\t116\t24\tfood, solid food",
    "122\t0.0004\t266\t31\tstep, stair",
    "123\t0.0004\t58\t12\ttank, storage tank",
    "124\t0.0004\t418\t83\ttrade name, brand name, brand, marque",
    "125\t0.0004\t319\t43\tmicrowave, microwave oven",
    "126\t0.0004\t1193\t139\tpot, flowerpot",
    "127\t0.0004\t97\t23\tanimal, animate being, beast, brute, creature, fauna",
    "128\t0.0004\t347\t36\tbicycle, bike, wheel, cycle ",
    "129\t0.0004\t52\t5\tlake",
    "130\t0.0004\t246\t22\tdishwasher, dish washer, dishwashing machine",
    "131\t0.0004\t108\t13\tscreen, silver screen, projection screen",
    "132\t0.0004\t201\t30\tblanket, cover",
    "133\t0.0004\t285\t21\tsculpture",
    "134\t0.0004\t268\t27\thood, exhaust hood",
    "135\t0.0003\t1020\t108\tsconce",
    "136\t0.0003\t1282\t122\tvase",
    "137\t0.0003\t528\t65\ttraffic light, traffic signal, stoplight",
    "138\t0.0003\t453\t57\ttray",
    "139\t0.0003\t671\t100\tashcan, trash can, garbage can, wastebin, ash bin, ash-bin, ashbin, "
    "dustbin, trash barrel, trash bin",
    "140\t0.0003\t397\t44\tfan",
    "141\t0.0003\t92\t8\tpier, wharf, wharfage, dock",
    "142\t0.0003\t228\t18\tcrt screen",
    "143\t0.0003\t570\t59\tplate",
    "144\t0.0003\t217\t22\tmonitor, monitoring device",
    "145\t0.0003\t206\t19\tbulletin board, notice board",
    "146\t0.0003\t130\t14\tshower",
    "147\t0.0003\t178\t28\tradiator",
    "148\t0.0002\t504\t57\tglass, drinking glass",
    "149\t0.0002\t775\t96\tclock",
    "150\t0.0002\t421\t56\tflag",
)
OBJECT_INFO_150_TXT = "\n".join(OBJECT_INFO_150_TXT_ROWS) + "\n"
# The same first rows as objectInfo150.csv (CSAIL's semantic-segmentation-pytorch copy, which
# joins words and synonyms alike with ";").
OBJECT_INFO_150_CSV_HEAD = (
    "Idx,Ratio,Train,Val,Name\n"
    "1,0.1576,11664,1172,wall\n"
    "2,0.1072,6046,612,building;edifice\n"
    "3,0.0878,8265,796,sky\n"
    "45,0.0019,549,46,chest;of;drawers;chest;bureau;dresser\n"
)
SIZE = (17, 23)  # H, W: not a multiple of JPEG's 8x8 blocks


def _image(rng, grey=False):
    """Flat 8x8 blocks: TensorFlow's fast integer IDCT then decodes them exactly as Pillow does,
    so decoded pixels can be compared for equality."""
    blocks = rng.integers(0, 256, (3, 3, 1 if grey else 3), dtype=np.uint8)
    image = np.repeat(np.repeat(blocks, 8, axis=0), 8, axis=1)[: SIZE[0], : SIZE[1]]
    return Image.fromarray(image[..., 0] if grey else image)


def write_tree(base, num_train=3, num_val=2, class_file="objectInfo150.txt", seed=0):
    """ADEChallengeData2016/ under `base`; annotations hold 0 (other), 1 and 150."""
    rng = np.random.default_rng(seed)
    root = base / "ADEChallengeData2016"
    for prefix, folder, count in (("train", "training", num_train), ("val", "validation", num_val)):
        (root / "images" / folder).mkdir(parents=True)
        (root / "annotations" / folder).mkdir(parents=True)
        for i in range(1, count + 1):
            name = f"ADE_{prefix}_{i:08d}"
            # One grey JPEG, as a few photos of the real archive are.
            image = _image(rng, grey=(prefix == "train" and i == 2))
            image.save(root / "images" / folder / f"{name}.jpg", quality=95, subsampling=0)
            label = rng.integers(0, 151, SIZE, dtype=np.uint8)
            label[0, :3] = (0, 1, 150)
            Image.fromarray(label, mode="L").save(root / "annotations" / folder / f"{name}.png")
    if class_file == "objectInfo150.txt":
        (root / class_file).write_text(OBJECT_INFO_150_TXT)
    elif class_file == "objectInfo150.csv":
        (root / class_file).write_text(OBJECT_INFO_150_CSV_HEAD)
    (root / "sceneCategories.txt").write_text("ADE_train_00000001 airport_terminal\n")
    return root


def _examples(builder, split, **kwargs):
    return {
        ex["file_name"].decode(): ex
        for ex in builder.as_dataset(split=split, **kwargs).as_numpy_iterator()
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory, build_dataset):
    base = tmp_path_factory.mktemp("ade20k")
    root = write_tree(base / "manual" / "extracted")  # found two levels down
    builder = build_dataset(ade20k.NAME, base / "tfds", base / "manual")
    return builder, root


def test_round_trip_matches_the_files(built):
    builder, root = built
    splits = builder.info.splits
    assert (splits["train"].num_examples, splits["validation"].num_examples) == (3, 2)
    for split, folder in (("train", "training"), ("validation", "validation")):
        examples = _examples(builder, split)
        names = sorted(p.name for p in (root / "images" / folder).iterdir())
        assert sorted(examples) == names
        raw = _examples(builder, split, decoders={"image": tfds.decode.SkipDecoding()})
        for name, ex in examples.items():
            path = root / "images" / folder / name
            assert raw[name]["image"] == path.read_bytes()  # JPEG stored as published
            with Image.open(path) as image:
                expected = np.asarray(image.convert("RGB"))
            assert ex["image"].shape == (*SIZE, 3) and ex["image"].dtype == np.uint8
            np.testing.assert_array_equal(ex["image"], expected)
            with Image.open(root / "annotations" / folder / name.replace(".jpg", ".png")) as im:
                assert im.mode == "L"
                annotation = np.asarray(im)
            assert ex["label"].shape == (*SIZE, 1) and ex["label"].dtype == np.uint8
            np.testing.assert_array_equal(ex["label"][..., 0], annotation)  # 0..150 as published


def test_dataset_info_ignores_other_and_shifts_the_classes(built):
    builder, _ = built
    info = get_dataset_info(ade20k.NAME)
    assert get_dataset_info("ade20k") is info
    assert info.name == ade20k.NAME and info.num_classes == 150 and info.ignore_label == 255
    for ex in builder.as_dataset(split="validation"):
        raw = ex["label"].numpy()[..., 0].astype(np.int64)
        label = info.adapt(ex)["label"].numpy()
        np.testing.assert_array_equal(label, np.where(raw == 0, 255, raw - 1))
        assert label.dtype == np.uint8 and {255, 0, 149} <= set(np.unique(label).tolist())


def test_class_table_is_the_official_list():
    rows = [line.split("\t") for line in OBJECT_INFO_150_TXT_ROWS[1:]]
    assert [int(idx) for idx, *_ in rows] == list(range(1, 151))
    assert len(ADE20K_CLASS_NAMES) == 150 == len(set(ADE20K_CLASS_NAMES))
    assert list(ADE20K_CLASS_NAMES) == [row[4].split(",")[0].strip() for row in rows]
    assert ADE20K_CLASS_NAMES[:3] == ("wall", "building", "sky")
    assert ADE20K_CLASS_NAMES[44] == "chest of drawers" and ADE20K_CLASS_NAMES[149] == "flag"


@pytest.mark.parametrize("file_name", ["objectInfo150.txt", "objectInfo150.csv"])
def test_class_file_is_read_and_checked(tmp_path, file_name):
    path = tmp_path / file_name
    path.write_text(OBJECT_INFO_150_TXT if file_name.endswith(".txt") else OBJECT_INFO_150_CSV_HEAD)
    rows = ade20k.read_class_file(path)
    if file_name.endswith(".txt"):
        assert len(rows) == 150
        assert rows[:2] == [(1, "wall"), (2, "building, edifice")] and rows[21] == (22, "water")
    else:
        assert rows[1] == (2, "building;edifice") and rows[3][0] == 45
    ade20k.check_class_file(path)  # passes: same classes as the table


@pytest.mark.parametrize(
    "text,match",
    [
        (
            "Idx,Ratio,Train,Val,Name\n1,0.1,1,1,wall\n2,0.1,1,1,sky\n",
            "class 2 is 'sky'.*'building'",
        ),
        ("Idx\tRatio\tTrain\tVal\tName\n151\t0.1\t1\t1\tthing\n", "Idx 151 is outside 1..150"),
        ("Index,Label\n1,wall\n", "no 'Idx' and 'Name' columns"),
        ("Idx,Name\nfirst,wall\n", "line 2: Idx 'first' is not a number"),
    ],
)
def test_foreign_class_file_is_refused(tmp_path, build_dataset, text, match):
    root = write_tree(tmp_path / "manual", 1, 1, class_file=None)
    (root / "objectInfo150.csv").write_text(text)
    with pytest.raises(DataError, match=match) as info:
        build_dataset(ade20k.NAME, tmp_path / "tfds", tmp_path / "manual")
    assert "objectInfo150.csv" in str(info.value)


def test_zip_in_manual_dir_and_count_warning(tmp_path, build_dataset, caplog):
    root = write_tree(tmp_path / "src", 2, 1, class_file="objectInfo150.csv")
    manual = tmp_path / "manual"
    manual.mkdir()
    with zipfile.ZipFile(manual / "ADEChallengeData2016.zip", "w") as archive:
        for path in sorted(root.rglob("*")):
            archive.write(path, path.relative_to(tmp_path / "src"))
    shutil.rmtree(tmp_path / "src")
    with caplog.at_level(logging.WARNING, logger=ade20k.__name__):
        builder = build_dataset(ade20k.NAME, tmp_path / "tfds", manual)
    assert (
        builder.info.splits["train"].num_examples,
        builder.info.splits["validation"].num_examples,
    ) == (2, 1)
    assert "validation has 1 images, the official ADEChallengeData2016 has 2000" in caplog.text


def _first(folder):
    return sorted(folder.iterdir())[0]


def test_missing_annotation_names_the_image(tmp_path, build_dataset):
    root = write_tree(tmp_path / "manual", 2, 3)
    _first(root / "annotations" / "validation").unlink()
    with pytest.raises(DataError) as info:
        build_dataset(ade20k.NAME, tmp_path / "tfds", tmp_path / "manual")
    message = str(info.value)
    assert "3 images in" in message and "but 2 annotations in" in message
    assert "ADE_val_00000001.jpg" in message and "ADE_val_00000002" not in message


def test_annotation_without_image_is_named(tmp_path, build_dataset):
    root = write_tree(tmp_path / "manual", 2, 1)
    _first(root / "images" / "training").unlink()
    with pytest.raises(DataError, match=r"1 annotations have no image .*ADE_train_00000001\.png"):
        build_dataset(ade20k.NAME, tmp_path / "tfds", tmp_path / "manual")


@pytest.mark.parametrize("fault", ["rgb", "value", "size"])
def test_bad_annotation_is_named(tmp_path, build_dataset, fault):
    root = write_tree(tmp_path / "manual", 1, 2)
    path = _first(root / "annotations" / "validation")
    label = np.asarray(Image.open(path)).copy()
    if fault == "rgb":
        Image.fromarray(np.stack([label] * 3, -1)).save(path)
        match = "mask PNG has mode 'RGB'"
    elif fault == "value":
        label[5, 5] = 151
        Image.fromarray(label, mode="L").save(path)
        match = r"mask values \[151\]"
    else:
        Image.fromarray(label[:-1], mode="L").save(path)
        match = "mask is 16x23 .* but its image .*ADE_val_00000001.jpg is 17x23"
    with pytest.raises(DataError, match=match) as info:
        build_dataset(ade20k.NAME, tmp_path / "tfds", tmp_path / "manual")
    assert str(path) in str(info.value)


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_half_extracted_tree_downloads_nothing_and_names_what_is_missing(tmp_path, no_network):
    root = write_tree(tmp_path / "manual", 1, 1)
    shutil.rmtree(root / "annotations")
    builder = tfds.builder(ade20k.NAME, data_dir=str(tmp_path / "data"))
    with pytest.raises(DatasetNotFoundError, match="downloads are off") as info:
        downloads.prepare(builder, manual_dir=tmp_path / "manual", download=False)
    message = str(info.value)
    assert f"{root / 'annotations' / 'training'}/" in message
    assert f"{root / 'annotations' / 'validation'}/" in message
    assert f"{root / 'images' / 'training'}/" not in message  # present, so not listed
    assert ade20k.ADE20K_URL in message
    assert not (tmp_path / "data").exists()


def test_experiment_loads_it_and_yields_scoring_pairs(tmp_path):
    """`--config.dataset=ade20k_scene_parsing --config.manual_dir=...` as the experiments and
    the zoo evaluation read it: prepared without downloads, labels 0..149 with other -> 255."""
    from jaxseg.data.pipeline import eval_pairs
    from jaxseg.experiment import config as experiment_config
    from jaxseg.experiment import datasets as experiment_datasets

    root = write_tree(tmp_path / "manual", 1, 2)
    config = experiment_config.base_config()
    config.dataset, config.num_classes = ade20k.NAME, 150
    config.data_dir, config.manual_dir = str(tmp_path / "tfds"), str(tmp_path / "manual")
    builder = experiment_datasets.load_builder(config, demo=False)
    info = experiment_datasets.dataset_info(config)
    pairs = list(eval_pairs(builder, "validation", info))
    assert len(pairs) == 2
    expected = []
    for path in sorted((root / "annotations" / "validation").iterdir()):
        raw = np.asarray(Image.open(path)).astype(np.int32)
        expected.append(np.where(raw == 0, 255, raw - 1).astype(np.int32).tobytes())
    # TFDS orders examples by a hash of their key: compare as sets.
    assert sorted(label.astype(np.int32).tobytes() for _, label in pairs) == sorted(expected)
    for image, label in pairs:
        assert image.shape == (*SIZE, 3) and image.dtype == np.uint8 and label.shape == SIZE
