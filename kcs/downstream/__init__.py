"""Downstream multiple-choice finetuning after removing a knowledge-critical subnetwork.

The paper's last claim (docs/method.md section 5): once the subnetwork learned on CommonsenseQA-linked
facts is removed and the model is finetuned on CommonsenseQA, the questions needing the removed
knowledge suffer more than the others. The authors never released this part; the protocol here is
ours and is documented in docs/downstream.md.

- `mcqa`: the multiple-choice question type, task files, linking questions to KG facts, groups
- `choice_scoring`: score each answer choice with the causal LM (log-probability of its tokens)
- `finetune`: the training loop (full / head-only / LoRA-style), removed weights kept at zero
- `wordnet_task`: the offline stand-in task built from WordNet 3.0 hypernymy
- `stats`: accuracy with confidence intervals, group differences, seed/question bootstrap
- `summary`: the table and figure from several result files
"""
