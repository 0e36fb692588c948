"""Evaluation: metrics (pure functions), the full-ranking evaluator, and the statistics every
audit uses: estimate builders with bootstrap CIs and tests (one convention each, see
``trustrec.eval._stats``), list similarity (RBO) and classification (AUC, TPR at FPR)."""

from trustrec.eval._evaluator import (
                                    DEFAULT_METRICS,
                                    TARGET_SEGMENTS,
                                    EvalResult,
                                    Validator,
                                    cold_item_mask,
                                    distinct_counts,
                                    evaluate,
                                    evaluate_split,
                                    hits_matrix,
                                    item_vectors_from_groups,
                                    restrict_targets,
                                    targets_all_seen,
)
from trustrec.eval._metrics import (
                                    ACCURACY_METRICS,
                                    aplt,
                                    average_popularity,
                                    average_precision,
                                    average_precision_trec,
                                    catalog_coverage,
                                    exposure_gini,
                                    gini,
                                    hit_rate,
                                    intra_list_diversity,
                                    item_user_counts,
                                    long_tail_mask,
                                    mrr,
                                    ndcg,
                                    novelty,
                                    parse_metric,
                                    precision,
                                    recall,
)
from trustrec.eval._fairness import (
    normalised_membership,
                                    exposure_by_group,
                                    group_distribution,
                                    jaccard_at_k,
                                    lorenz_curve,
                                    miscalibration,
                                    popularity_lift,
                                    prag_star_at_k,
                                    serp_star_at_k,
                                    snsr,
                                    snsv,
)
from trustrec.eval._groups import GroupMetricFrame
from trustrec.eval._classification import auc_rows, macro_ovr_auc, roc_auc, roc_points, tpr_at_fpr
from trustrec.eval._similarity import rank_biased_overlap
from trustrec.eval._stats import (
                                    DEFAULT_CI,
                                    MAX_N_BOOT,
                                    WILCOXON_ZERO_METHOD,
                                    Estimate,
                                    PairedTest,
                                    bootstrap_ci,
                                    bootstrap_rows,
                                    cluster_mean_estimate,
                                    cluster_ratio_estimate,
                                    mannwhitney_pvalue,
                                    mean_estimate,
                                    paired_estimate,
                                    paired_test,
                                    percentile_ci,
                                    stratified_bootstrap_rows,
                                    two_sample_estimate,
                                    wilcoxon_pvalue,
                                    wilson_interval,
)
from trustrec.eval._semisynthetic import (
                                    SemiSyntheticConfig,
                                    SemiSyntheticWorld,
                                    draw_world,
                                    fit_ground_truth,
                                    true_recall,
)
from trustrec.eval._unbiased import (
                                    SCHEMES,
                                    UNBIASED_METRICS,
                                    RandomExposureSet,
                                    evaluate_random_exposure,
                                    evaluate_schemes,
                                    random_exposure_set,
                                    scheme_label,
                                    score_candidates,
                                    topk_membership,
)

__all__ = ["evaluate", "evaluate_split", "EvalResult", "Validator", "DEFAULT_METRICS", "hits_matrix", "distinct_counts",
           "TARGET_SEGMENTS", "cold_item_mask", "targets_all_seen", "restrict_targets", "item_vectors_from_groups",
           "ACCURACY_METRICS", "recall", "precision", "hit_rate", "ndcg", "mrr", "average_precision",
           "average_precision_trec", "item_user_counts",
           "catalog_coverage", "gini", "exposure_gini", "average_popularity", "aplt", "long_tail_mask",
           "novelty", "intra_list_diversity", "parse_metric", "bootstrap_ci", "paired_test", "PairedTest",
           "GroupMetricFrame", "group_distribution", "normalised_membership", "miscalibration", "popularity_lift", "lorenz_curve",
           "exposure_by_group", "jaccard_at_k", "serp_star_at_k", "prag_star_at_k", "snsr", "snsv",
           "SCHEMES", "UNBIASED_METRICS", "RandomExposureSet", "random_exposure_set", "topk_membership",
           "evaluate_random_exposure", "evaluate_schemes", "scheme_label", "score_candidates",
           "SemiSyntheticConfig", "SemiSyntheticWorld", "fit_ground_truth", "draw_world", "true_recall",
           "Estimate", "DEFAULT_CI", "MAX_N_BOOT", "WILCOXON_ZERO_METHOD", "mean_estimate", "paired_estimate", "two_sample_estimate",
           "cluster_ratio_estimate", "cluster_mean_estimate", "percentile_ci", "bootstrap_rows",
           "stratified_bootstrap_rows", "wilson_interval", "wilcoxon_pvalue", "mannwhitney_pvalue",
           "rank_biased_overlap", "auc_rows", "roc_auc", "macro_ovr_auc", "roc_points", "tpr_at_fpr"]
