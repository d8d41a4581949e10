"""Install osoup. Runtime dependencies are pinned in tools/requirements.txt (tools/setup.sh)."""
from pathlib import Path

from setuptools import find_packages, setup

COMMANDS = {
    # data pipeline
    "make-mini-corpus": "osoup.bin.make_mini_corpus",
    "prep-covost2": "osoup.bin.prep_covost2",
    "prep-librispeech": "osoup.bin.prep_librispeech",
    "prep-aishell": "osoup.bin.prep_aishell",
    "validate-data-dir": "osoup.bin.validate_data_dir",
    "fix-data-dir": "osoup.bin.fix_data_dir",
    "split-scp": "osoup.bin.split_scp",
    "speed-perturb": "osoup.bin.speed_perturb",
    "compute-fbank": "osoup.bin.compute_fbank",
    "filter-data": "osoup.bin.filter_data",
    "compute-cmvn": "osoup.bin.compute_cmvn",
    "train-spm": "osoup.bin.train_spm",
    "filter-ctc": "osoup.bin.filter_ctc",
    # training, decoding, scoring
    "train": "osoup.bin.train",
    "decode": "osoup.bin.decode",
    "score": "osoup.bin.score",
    "results": "osoup.bin.results",
    "conflict": "osoup.bin.conflict",
    "soup": "osoup.bin.model_soup",
    # pretrained backbones (the hf extra)
    "make-tiny-w2v2": "osoup.bin.make_tiny_w2v2",
}

setup(
    name="osoup",
    version="0.1.0",
    description="Objective Soups: multilingual multi-task speech training with multi-objective optimization",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["osoup", "osoup.*"]),
    python_requires=">=3.10",
    install_requires=[
        "torch==2.11.0",
        "torchaudio==2.11.0",
        "torchjd==0.18.0",
        "numpy",
        "kaldiio",
        "sentencepiece",
        "soundfile",
        "sacrebleu",
        "jiwer",
        "configargparse",
        "PyYAML",
        "tqdm",
        "matplotlib",
        "tensorboard",
        "espeakng-loader",
    ],
    extras_require={
        "test": ["pytest", "pytest-timeout", "kaldi-native-fbank"],
        # solvers of the optional weightings (--weighting upgrad | dualproj | cagrad | nash_mtl | fairgrad)
        "solvers": ["torchjd[quadprog-projector,cagrad,nash-mtl,fairgrad]==0.18.0"],
        # --backbone hf_wav2vec2 (wav2vec 2.0 / XLS-R / HuBERT / WavLM checkpoints), osoup-make-tiny-w2v2
        "hf": ["transformers==5.24.0"],
    },
    entry_points={
        "console_scripts": [f"osoup-{name}={mod}:main" for name, mod in COMMANDS.items()]
    },
)
