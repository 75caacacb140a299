"""lmms-eval's own POPE and MME functions, from the installed package: the local task YAMLs beside this file name
them as ``utils.<function>`` (lmms-eval resolves ``!function`` relative to the YAML)."""
from lmms_eval.tasks.mme.utils import (mme_aggregate_results, mme_doc_to_text, mme_doc_to_visual,  # noqa: F401
                                       mme_process_results)
from lmms_eval.tasks.pope.utils import (pope_aggregate_accuracy, pope_aggregate_f1_score,  # noqa: F401
                                        pope_aggregate_precision, pope_aggregate_recall, pope_aggregate_yes_ratio,
                                        pope_doc_to_text, pope_doc_to_visual, pope_process_results)
