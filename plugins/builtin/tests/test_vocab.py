"""The sentencepiece vocabulary plugin: T5's special ids, sentinels, decoding, training."""

from __future__ import annotations

import pickle
from pathlib import Path
from pydoc_data.topics import topics

import pytest

from t5k_builtin.configs import SentencePieceConfig
from t5k_builtin.vocab import SentencePieceVocabulary, build_sentencepiece
from t5kernel.api import BuildContext, Vocabulary
from t5kernel.errors import ConfigError, DataError

TEXTS = [topics[k] for k in sorted(topics)][:40]
SIZE = 300
WIKI = Path("/work/shared/data/wikitext2_raw/wiki.valid.raw")


def unchecked(config_cls, **options):
    """A config with ``options`` set after construction, past its ``__post_init__`` range
    checks, so that the plugin's own checks are what a test exercises."""
    config = config_cls()
    for key, value in options.items():
        setattr(config, key, value)
    return config


def _build(texts=TEXTS, run_dir=None, **options):
    config = unchecked(SentencePieceConfig, **{"size": SIZE, **options})
    return build_sentencepiece(config, BuildContext(run_dir=run_dir, extras={"texts": texts}))


@pytest.fixture(scope="module")
def vocab():
    return _build()


def test_protocol_and_sizes(vocab):
    assert isinstance(vocab, Vocabulary)
    assert (vocab.pad_id, vocab.eos_id, vocab.unk_id) == (0, 1, 2)
    assert vocab.base_vocab_size == SIZE
    assert vocab.extra_ids == 100
    assert vocab.vocab_size == SIZE + 100


def test_special_pieces(vocab):
    assert [vocab.id_to_piece(i) for i in range(3)] == ["<pad>", "</s>", "<unk>"]
    # no BOS: the third special id is unk and encoding never adds a prefix id
    assert vocab.encode("x")[0] not in (0, 1, 2)


def test_sentinels_numbered_from_end(vocab):
    assert vocab.sentinel_id(0) == vocab.vocab_size - 1
    assert vocab.sentinel_id(1) == vocab.vocab_size - 2
    assert vocab.sentinel_id(99) == vocab.base_vocab_size
    assert vocab.id_to_piece(vocab.sentinel_id(5)) == "<extra_id_5>"
    with pytest.raises(ValueError):
        vocab.sentinel_id(100)


def test_round_trip(vocab):
    text = "The return statement leaves the current function call."
    ids = vocab.encode(text)
    assert ids and all(3 <= i < vocab.base_vocab_size for i in ids)
    assert vocab.decode(ids) == text


def test_encode_never_emits_sentinels(vocab):
    ids = vocab.encode("<extra_id_0> literal sentinel text <extra_id_99>")
    assert max(ids) < vocab.base_vocab_size


def test_decode_stops_at_first_eos(vocab):
    a, b = vocab.encode("import module"), vocab.encode("class definition")
    assert vocab.decode(a + [1] + b) == vocab.decode(a)
    assert vocab.decode([1] + a) == ""


def test_decode_maps_sentinels_to_unk(vocab):
    ids = vocab.encode("while loop")
    with_sentinel = ids + [vocab.sentinel_id(0)] + ids
    assert vocab.decode(with_sentinel) == vocab.decode(ids + [vocab.unk_id] + ids)
    assert vocab.decode(with_sentinel) != vocab.decode(ids + ids)


def test_deterministic_training(vocab):
    assert _build().model_proto == vocab.model_proto


def test_save_and_reload(vocab, tmp_path):
    vocab.save(tmp_path)
    again = SentencePieceVocabulary.from_file(tmp_path / "spm.model", extra_ids=10)
    assert again.vocab_size == SIZE + 10
    text = "Exceptions are raised by the raise statement."
    assert again.encode(text) == vocab.encode(text)
    built = build_sentencepiece(
        SentencePieceConfig(model_file=str(tmp_path / "spm.model"), size=SIZE), BuildContext()
    )
    assert built.model_proto == vocab.model_proto


def test_pickle(vocab):
    clone = pickle.loads(pickle.dumps(vocab))
    assert clone.vocab_size == vocab.vocab_size
    assert clone.encode("lambda") == vocab.encode("lambda")


def test_run_dir_cache_is_written_and_reused(vocab, tmp_path):
    built = _build(run_dir=tmp_path)
    cached = tmp_path / "vocab" / "spm.model"
    assert cached.read_bytes() == built.model_proto == vocab.model_proto
    # resume: no texts at all, the cached model is used
    again = _build(texts=None, run_dir=tmp_path)
    assert again.model_proto == vocab.model_proto
    with pytest.raises(DataError, match="vocabulary.size=301"):
        _build(texts=None, run_dir=tmp_path, size=SIZE + 1)
    # a cached model trained with other options is refused, naming the option
    for option, value in (("model_type", "bpe"), ("character_coverage", 1.0),
                          ("max_training_texts", 7), ("max_text_chars", 99)):
        with pytest.raises(DataError, match=rf"vocabulary.{option}=.* asks for {value!r}"):
            _build(texts=None, run_dir=tmp_path, **{option: value})
    # a run directory from before the options were recorded: checked by size only
    (tmp_path / "vocab" / "spm.options.json").unlink()
    assert _build(texts=None, run_dir=tmp_path, model_type="bpe").model_proto == vocab.model_proto


def test_missing_model_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        build_sentencepiece(
            SentencePieceConfig(model_file=str(tmp_path / "nope.model")), BuildContext()
        )


def test_model_file_that_is_not_sentencepiece(tmp_path):
    bad = tmp_path / "bad.model"
    bad.write_text("this is not a protobuf")
    with pytest.raises(DataError, match="not a SentencePiece model"):
        build_sentencepiece(SentencePieceConfig(model_file=str(bad)), BuildContext())


def test_empty_texts():
    with pytest.raises(DataError, match="empty"):
        _build(texts=["", "   ", "\n"])
    with pytest.raises(DataError, match="texts"):
        _build(texts=None)


def test_too_few_texts_says_allowed_size():
    with pytest.raises(DataError, match=r"at most \d+ pieces"):
        _build(texts=["a tiny corpus with few words", "and another line"], size=500)


def test_non_string_text():
    with pytest.raises(DataError, match="must be str"):
        _build(texts=[b"bytes are not text"])


def test_bad_config_values():
    with pytest.raises(ConfigError, match="vocabulary.model_type"):
        _build(model_type="wordpiece")
    with pytest.raises(ConfigError, match="vocabulary.extra_ids"):
        _build(extra_ids=-1)


def test_max_training_texts_and_long_texts_are_cut():
    long_text = " ".join(TEXTS)  # one very long line; cut into pieces for training
    cut = _build(texts=[long_text], max_text_chars=500)
    assert cut.base_vocab_size == SIZE
    limited = _build(texts=TEXTS * 5, max_training_texts=len(TEXTS))
    assert limited.model_proto == _build().model_proto


@pytest.mark.skipif(not WIKI.is_file(), reason="wikitext-2 not available")
def test_wikitext_vocabulary():
    texts = WIKI.read_text(encoding="utf-8").split("\n \n")
    vocab = _build(texts=texts, size=1000)
    sentence = "The game was released in Japan in 2011 ."
    ids = vocab.encode(sentence)
    assert vocab.decode(ids) == sentence
    assert len(ids) < len(sentence) / 2  # real subword units, not characters


C4 = Path("/work/shared/data/c4/c4-en-train.00000-of-01024.first1000.json")
NEWSTEST = Path("/work/shared/data/wmt/newstest2014_en-de/newstest2014-deen")


@pytest.mark.skipif(not (C4.is_file() and NEWSTEST.with_suffix(".de").is_file()),
                    reason="no shared C4 / WMT data")
def test_a_vocabulary_trained_with_wmt_tasks_covers_their_language():
    """P §3.1.3 trained the vocabulary on C4 mixed 10:1:1:1 with German, French and
    Romanian: a run with a WMT task mixes in its German side, and German text stops being
    littered with <unk> (English C4 alone leaves out the umlauts at coverage 0.9995)."""
    import json
    from types import SimpleNamespace

    from t5kernel.data import vocabulary_texts

    docs = [json.loads(line)["text"] for line in C4.read_text(encoding="utf-8").splitlines()]

    class Corpus:
        def examples(self, split):
            return iter({"text": t} for t in docs)

    # newstest2014 stands in for WMT's training data (what WmtEnDe.vocabulary_texts
    # offers): its first 2,000 lines train, the rest measure
    german = NEWSTEST.with_suffix(".de").read_text(encoding="utf-8").splitlines()
    wmt = SimpleNamespace(vocabulary_texts=lambda: {"de": iter(german[:2000])})

    def unk_rate(tasks):
        vocab = _build(list(vocabulary_texts(Corpus(), tasks)), size=2000)
        ids = [i for line in german[2000:] for i in vocab.encode(line)]
        return ids.count(vocab.unk_id) / len(ids)

    english_only, mixed = unk_rate({}), unk_rate({"wmt_ende": wmt})
    assert english_only > 0.01 and mixed < 0.003, (english_only, mixed)


def _with_sentinel_pieces(proto: bytes, count: int, marker: str = "\u2581") -> bytes:
    """``proto`` with ``count`` sentinel pieces appended as SeqIO's ``_load_model`` does
    (USER_DEFINED, ``<extra_id_0>`` last)."""
    pytest.importorskip("google.protobuf")
    from sentencepiece import sentencepiece_model_pb2 as model_pb2

    model = model_pb2.ModelProto()
    model.ParseFromString(proto)
    for k in reversed(range(count)):
        model.pieces.add(piece=f"{marker}<extra_id_{k}>", score=0.0,
                         type=model_pb2.ModelProto.SentencePiece.USER_DEFINED)
    return model.SerializeToString()


@pytest.mark.parametrize("marker", ["\u2581", ""])
def test_a_model_with_seqio_sentinel_pieces_keeps_their_ids(vocab, marker):
    proto = _with_sentinel_pieces(vocab.model_proto, 100, marker)
    seqio_style = SentencePieceVocabulary(proto, extra_ids=100)
    assert seqio_style.vocab_size == vocab.vocab_size == SIZE + 100
    assert seqio_style.base_vocab_size == SIZE
    assert seqio_style.sentinel_id(0) == vocab.sentinel_id(0) == SIZE + 99
    assert seqio_style._sp.id_to_piece(seqio_style.sentinel_id(7)) == f"{marker}<extra_id_7>"
    text = "The quick brown fox jumps over the lazy dog."
    assert seqio_style.encode(text) == vocab.encode(text)
    ids = vocab.encode(text) + [seqio_style.sentinel_id(3), 1]
    assert seqio_style.decode(ids) == vocab.decode(ids)
    with pytest.raises(ConfigError, match=r"ends with 100 sentinel pieces.*extra_ids=100 "):
        SentencePieceVocabulary(proto, extra_ids=0)
    with pytest.raises(ConfigError, match=r"extra_ids=100 .*got 50"):
        SentencePieceVocabulary(proto, extra_ids=50)
