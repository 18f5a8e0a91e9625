"""Entry point of the ``t5kernel-builtin`` distribution: every paper variant as a record.

This module is imported by ``t5k list-plugins``; it must stay light (no torch, no
datasets). Targets are strings, imported only when a run selects the plugin.
"""

from __future__ import annotations

from t5k_builtin import configs as c
from t5kernel.api import NoConfig, PluginSpec, hookimpl

_P = "t5k_builtin"


@hookimpl
def t5k_architectures():
    yield PluginSpec(
        "encdec",
        f"{_P}.model.encdec:EncDecArchitecture",
        c.EncDecConfig,
        "T5 v1.0 encoder-decoder (the paper's baseline): pre-norm RMSNorm, relative "
        "position bias, ReLU FFN, tied embeddings",
    )
    yield PluginSpec(
        "encdec_shared",
        f"{_P}.model.encdec_shared:EncDecSharedArchitecture",
        c.EncDecConfig,
        "Encoder-decoder whose encoder and decoder share one stack of parameters (T5 Table 2)",
    )
    yield PluginSpec(
        "encdec_half",
        f"{_P}.model.encdec:EncDecHalfArchitecture",
        c.EncDecConfig,
        "Baseline encoder-decoder with half the layers in each stack (T5 Table 2 '6 layers')",
    )
    yield PluginSpec(
        "lm",
        f"{_P}.model.decoder_only:LMArchitecture",
        c.EncDecConfig,
        "Decoder-only causal language model over [inputs, targets]; loss on the whole "
        "sequence (T5 Table 2 'Language model')",
    )
    yield PluginSpec(
        "prefix_lm",
        f"{_P}.model.decoder_only:PrefixLMArchitecture",
        c.EncDecConfig,
        "Decoder-only LM with fully visible attention over the inputs; loss on targets only "
        "(T5 Table 2 'Prefix LM')",
    )


@hookimpl
def t5k_vocabularies():
    yield PluginSpec(
        "sentencepiece",
        f"{_P}.vocab:build_sentencepiece",
        c.SentencePieceConfig,
        "SentencePiece trained on the run's corpus (or loaded from a .model) plus 100 "
        "sentinels numbered from the end; pad=0, eos=1, unk=2",
    )


@hookimpl
def t5k_objectives():
    yield PluginSpec(
        "iid_spans",
        f"{_P}.objectives.denoise:IidSpans",
        c.IidSpansConfig,
        "Baseline denoising: i.i.d. 15% noise, each corrupted run -> one sentinel (T5 Table 5)",
    )
    yield PluginSpec("span", f"{_P}.objectives.span:Span", c.SpanConfig,
                     "Span corruption (final T5 objective): random spans, 15% noise, mean length "
                     "3; inputs 512 -> 568 raw tokens, targets 114 (T5 Table 7, §3.7)")
    others = f"{_P}.objectives.others"
    yield PluginSpec("prefix_lm", f"{others}:PrefixLm", c.PrefixLmConfig,
                     "Prefix LM: random split point; inputs = prefix, targets = rest (T5 Table 4)")
    yield PluginSpec("lm", f"{others}:Lm", c.LmConfig,
                     "Plain language modelling: no inputs, targets = a text chunk (decoder-only)")
    yield PluginSpec("bert", f"{others}:Bert", c.BertConfig,
                     "BERT-style: 15% i.i.d., 90% mask id / 10% random id, targets = original "
                     "(T5 Tables 4-5)")
    yield PluginSpec("mass", f"{others}:Mass", c.MassConfig,
                     "MASS-style: 15% i.i.d. tokens -> mask id, targets = original (T5 Table 5)")
    yield PluginSpec("deshuffle", f"{others}:Deshuffle", c.DeshuffleConfig,
                     "Deshuffling: inputs = shuffled chunk, targets = original (T5 Table 4)")
    yield PluginSpec("iid_drop", f"{others}:IidDrop", c.IidDropConfig,
                     "Drop corrupted tokens: 15% i.i.d. dropped from inputs, targets = the dropped "
                     "tokens (T5 Table 5)")


@hookimpl
def t5k_corpora():
    yield PluginSpec(
        "embedded",
        f"{_P}.corpora.embedded:EmbeddedCorpus",
        c.EmbeddedCorpusConfig,
        "Offline English text every Python carries: pydoc topics and stdlib docstrings",
    )
    yield PluginSpec(
        "text_files",
        f"{_P}.corpora.text_files:TextFiles",
        c.TextFilesConfig,
        "Local .txt/.jsonl/.json/.parquet files through the datasets library",
    )
    yield PluginSpec(
        "c4",
        f"{_P}.corpora.web:C4Corpus",
        c.C4Config,
        "C4 en (P §2.2): hub allenai/c4, local shards, or raw pages cleaned with the C4 rules",
    )
    yield PluginSpec(
        "c4_unfiltered",
        f"{_P}.corpora.web:C4UnfilteredCorpus",
        c.C4UnfilteredConfig,
        "C4 unfiltered (en.noclean): length filter, URL dedupe, language id only (P Table 8)",
    )
    yield PluginSpec(
        "realnews_like",
        f"{_P}.corpora.web:RealNewsLikeCorpus",
        c.RealNewsLikeConfig,
        "C4 restricted to the RealNews domain list (P Table 8)",
    )
    yield PluginSpec(
        "webtext_like",
        f"{_P}.corpora.web:WebTextLikeCorpus",
        c.WebTextLikeConfig,
        "C4 pages whose URL is in an OpenWebText URL list, Reddit score >= 3 (P Table 8)",
    )
    yield PluginSpec(
        "wikipedia",
        f"{_P}.corpora.web:WikipediaCorpus",
        c.WikipediaConfig,
        "English Wikipedia articles (P Table 8)",
    )
    yield PluginSpec(
        "wikipedia_tbc",
        f"{_P}.corpora.web:WikipediaTbcCorpus",
        c.WikipediaTbcConfig,
        "Wikipedia + Toronto Books Corpus, interleaved (P Table 8)",
    )
    yield PluginSpec(
        "demo_acceptability",
        f"{_P}.corpora.demo_tasks:Acceptability",
        c.DemoTaskConfig,
        "Demo task: original vs word-shuffled sentence (accuracy, Matthews corr.)",
    )
    yield PluginSpec(
        "demo_summarize",
        f"{_P}.corpora.demo_tasks:Summarize",
        c.DemoTaskConfig,
        "Demo task: 'summarize:' a paragraph into its lead sentence (ROUGE)",
    )
    yield PluginSpec(
        "demo_pig_latin",
        f"{_P}.corpora.demo_tasks:PigLatin",
        c.DemoTaskConfig,
        "Demo task: 'translate English to Pig Latin:' (BLEU)",
    )


@hookimpl
def t5k_mixers():
    yield PluginSpec(
        "proportional",
        f"{_P}.mixers:Proportional",
        c.ProportionalMixerConfig,
        "Examples-proportional mixing, each corpus capped at K examples",
    )
    yield PluginSpec(
        "temperature",
        f"{_P}.mixers:Temperature",
        c.TemperatureMixerConfig,
        "Temperature-scaled mixing: K-capped sizes to the power 1/T, renormalised",
    )
    yield PluginSpec("equal", f"{_P}.mixers:Equal", NoConfig, "Every corpus at the same rate")


@hookimpl
def t5k_finetune_strategies():
    yield PluginSpec("full", f"{_P}.finetune:Full", NoConfig, "Fine-tune every parameter")


@hookimpl
def t5k_evaluators():
    yield PluginSpec("accuracy", f"{_P}.evaluators:Accuracy", NoConfig, "Accuracy x100")
    yield PluginSpec(
        "matthews_corr",
        f"{_P}.evaluators:MatthewsCorr",
        NoConfig,
        "Matthews correlation x100 (scikit-learn)",
    )
    yield PluginSpec(
        "rouge",
        f"{_P}.evaluators:Rouge",
        c.RougeConfig,
        "ROUGE-1/2/Lsum F x100 (rouge-score, bootstrap median as T5)",
    )
    yield PluginSpec(
        "bleu",
        f"{_P}.evaluators:Bleu",
        c.BleuConfig,
        "Corpus BLEU (sacrebleu, T5's settings: intl tokenizer, exp smoothing)",
    )


@hookimpl
def t5k_backends():
    yield PluginSpec(
        "cpu", f"{_P}.backends.cpu:CpuBackend", c.CpuBackendConfig, "PyTorch on the CPU, float32"
    )


@hookimpl
def t5k_optimizers():
    yield PluginSpec(
        "adafactor",
        f"{_P}.optim.adafactor:AdafactorFactory",
        c.AdafactorConfig,
        "Adafactor as in Mesh TF: no momentum, decay 1-t^-0.8, update clipping, "
        "parameter-scaled relative steps",
    )


@hookimpl
def t5k_schedules():
    yield PluginSpec(
        "rsqrt",
        f"{_P}.optim.schedules:Rsqrt",
        c.RsqrtScheduleConfig,
        "Inverse square root: 1/sqrt(max(step, 10^4)) (pre-training)",
    )
    yield PluginSpec(
        "constant",
        f"{_P}.optim.schedules:Constant",
        c.ConstantScheduleConfig,
        "Constant learning rate (fine-tuning: 1e-3)",
    )
