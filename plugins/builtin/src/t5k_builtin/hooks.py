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
    yield PluginSpec("glue_cola", f"{_P}.corpora.glue:GlueCola", c.GlueTaskConfig,
                     "GLUE CoLA: 'cola sentence:' -> acceptable/unacceptable (Matthews corr.)")
    yield PluginSpec("glue_sst2", f"{_P}.corpora.glue:GlueSst2", c.GlueTaskConfig,
                     "GLUE SST-2: 'sst2 sentence:' -> positive/negative (accuracy)")
    yield PluginSpec("glue_mrpc", f"{_P}.corpora.glue:GlueMrpc", c.GlueTaskConfig,
                     "GLUE MRPC paraphrase (F1, accuracy)")
    yield PluginSpec("glue_qqp", f"{_P}.corpora.glue:GlueQqp", c.GlueTaskConfig,
                     "GLUE QQP duplicate questions (F1, accuracy)")
    yield PluginSpec("glue_stsb", f"{_P}.corpora.glue:GlueStsb", c.GlueTaskConfig,
                     "GLUE STS-B similarity as a number on a 0.2 grid (Pearson, Spearman)")
    yield PluginSpec("glue_mnli", f"{_P}.corpora.glue:GlueMnli", c.MnliTaskConfig,
                     "GLUE MNLI, evaluated on matched and mismatched (accuracy)")
    yield PluginSpec("glue_qnli", f"{_P}.corpora.glue:GlueQnli", c.GlueTaskConfig,
                     "GLUE QNLI (accuracy)")
    yield PluginSpec("glue_rte", f"{_P}.corpora.glue:GlueRte", c.GlueTaskConfig,
                     "GLUE RTE (accuracy)")
    yield PluginSpec("glue_wnli", f"{_P}.corpora.glue:GlueWnli", c.GlueTaskConfig,
                     "GLUE WNLI (accuracy; not in the GLUE average)")
    yield PluginSpec("super_glue_boolq", f"{_P}.corpora.glue:SuperGlueBoolq", c.SuperGlueTaskConfig,
                     "SuperGLUE BoolQ (accuracy)")
    yield PluginSpec("super_glue_cb", f"{_P}.corpora.glue:SuperGlueCb", c.SuperGlueTaskConfig,
                     "SuperGLUE CB (3-class macro F1, accuracy)")
    yield PluginSpec("super_glue_copa", f"{_P}.corpora.glue:SuperGlueCopa", c.SuperGlueTaskConfig,
                     "SuperGLUE COPA -> choice1/choice2 (accuracy)")
    yield PluginSpec("super_glue_multirc", f"{_P}.corpora.glue:SuperGlueMultirc", c.SuperGlueTaskConfig,
                     "SuperGLUE MultiRC, one example per answer (F1a, EM)")
    yield PluginSpec("super_glue_record", f"{_P}.corpora.glue:SuperGlueRecord", c.SuperGlueTaskConfig,
                     "SuperGLUE ReCoRD with entities and highlights (SQuAD EM/F1)")
    yield PluginSpec("super_glue_rte", f"{_P}.corpora.glue:SuperGlueRte", c.SuperGlueTaskConfig,
                     "SuperGLUE RTE (accuracy)")
    yield PluginSpec("super_glue_wic", f"{_P}.corpora.glue:SuperGlueWic", c.SuperGlueTaskConfig,
                     "SuperGLUE WiC (accuracy)")
    yield PluginSpec("super_glue_wsc", f"{_P}.corpora.glue:SuperGlueWsc", c.SuperGlueTaskConfig,
                     "SuperGLUE WSC in T5's simple referent format (accuracy)")
    yield PluginSpec("squad", f"{_P}.corpora.qa_sum_mt:Squad", c.SquadConfig,
                     "SQuAD v1.1: 'question: Q context: C' -> first answer (EM/F1 over all answers)")
    yield PluginSpec("cnn_dailymail", f"{_P}.corpora.qa_sum_mt:CnnDailymail", c.CnnDailymailConfig,
                     "CNN/Daily Mail: 'summarize: <article>' -> highlights (ROUGE)")
    yield PluginSpec("wmt_ende", f"{_P}.corpora.qa_sum_mt:WmtEnDe", c.WmtEnDeConfig,
                     "WMT English to German: 'translate English to German:' (BLEU)")
    yield PluginSpec("wmt_enfr", f"{_P}.corpora.qa_sum_mt:WmtEnFr", c.WmtEnFrConfig,
                     "WMT English to French: 'translate English to French:' (BLEU)")
    yield PluginSpec("wmt_enro", f"{_P}.corpora.qa_sum_mt:WmtEnRo", c.WmtEnRoConfig,
                     "WMT English to Romanian: 'translate English to Romanian:' (BLEU)")
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
    yield PluginSpec("adapters", f"{_P}.finetune:Adapters", c.AdaptersConfig,
                     "Adapter layers (inner dim d) after every feed-forward; only they and the "
                     "layer norms train (T5 Table 10)")
    yield PluginSpec("gradual_unfreeze", f"{_P}.finetune:GradualUnfreeze",
                     c.GradualUnfreezeConfig,
                     "Blocks unfrozen from the top of encoder and decoder over equal episodes "
                     "(T5 Table 10)")


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
    yield PluginSpec("f1_invalid", f"{_P}.evaluators:F1WithInvalid", NoConfig,
                     "Binary F1 x100; a prediction that is not a label counts wrong (MRPC, QQP)")
    yield PluginSpec("pearson_spearman", f"{_P}.evaluators:PearsonSpearman", NoConfig,
                     "Pearson and Spearman correlation x100 (STS-B)")
    yield PluginSpec("mean_3class_f1", f"{_P}.evaluators:MeanClassF1", NoConfig,
                     "Macro F1 over three classes x100 (CB)")
    yield PluginSpec("multirc", f"{_P}.evaluators:MultiRC", NoConfig,
                     "MultiRC F1a over answers and exact match per question")
    yield PluginSpec("squad", f"{_P}.evaluators:Squad", NoConfig,
                     "SQuAD v1.1 EM and F1 with the official normalisation, max over answers")
    yield PluginSpec("paper_averages", f"{_P}.averages:PaperAverages", NoConfig,
                     "The paper's GLUE / SuperGLUE averages and summary columns (eval.averages)")


@hookimpl
def t5k_backends():
    yield PluginSpec(
        "cpu", f"{_P}.backends.cpu:CpuBackend", c.CpuBackendConfig, "PyTorch on the CPU, float32"
    )
    yield PluginSpec("cuda", f"{_P}.backends.cuda:CudaBackend", c.CudaBackendConfig,
                     "NVIDIA GPUs: bf16 autocast (fp16 + loss scaling without bf16), TF32, "
                     "optional torch.compile, DDP over NCCL under torchrun")


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
