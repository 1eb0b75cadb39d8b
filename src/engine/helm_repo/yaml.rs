//! What both YAML parsers (`index.yaml`, `Chart.yaml`) share: the parser budget, Go's
//! reading of `null`, and the one-line wording of a refusal.

use serde::{Deserialize, Deserializer};

use super::{QUOTE_LEN, one_line};
use crate::limits::{MAX_YAML_DEPTH, MAX_YAML_EVENTS};

/// An empty or `null` value reads as the type's default, as Go's YAML decoder leaves a
/// field at its zero value (`icon:` with nothing after it is common in Chart.yaml).
pub(super) fn null_as_default<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The parser options for a YAML document from a repository: anchors and aliases refused
/// (no alias bomb, nothing retained for replay), at most [`MAX_YAML_DEPTH`] levels and
/// [`MAX_YAML_EVENTS`] events and nodes, at most `max_bytes` of input and of scalars, and
/// no source snippets in errors (one line, no quoted input).
pub(super) fn yaml_options(max_bytes: usize) -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_reader_input_bytes = Some(max_bytes);
    budget.max_total_scalar_bytes = max_bytes;
    budget.max_events = MAX_YAML_EVENTS;
    budget.max_nodes = MAX_YAML_EVENTS;
    budget.max_depth = MAX_YAML_DEPTH;
    budget.flow_nesting_limit = MAX_YAML_DEPTH;
    budget.max_aliases = 0;
    budget.max_anchors = 0;
    budget.max_documents = 1;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.alias_limits = serde_saphyr::alias_limits! {
        max_total_replayed_events: 0,
        max_alias_expansions_per_anchor: 0,
    };
    // An ignored field such as `digest: 0000…1e460` must not fail the document: scalars
    // are inferred when skipped, and Go reads such a value without complaint.
    options.non_finite_float_policy = serde_saphyr::NonFiniteFloatPolicy::AsString;
    options.with_snippet = false;
    options
}

/// One line saying why the YAML document `doc` was refused, naming the limit and what to
/// fix; `size_limit` names the size cap of that document.
pub(super) fn yaml_problem(doc: &str, size_limit: &str, e: &serde_saphyr::Error) -> String {
    use serde_saphyr::Error as E;
    use serde_saphyr::budget::BudgetBreach as B;
    let aliases = || {
        format!(
            "{doc} uses YAML anchors or aliases (&name, *name), which are refused to rule out \
             alias bombs (\"billion laughs\"); write the values out in full"
        )
    };
    let depth = || {
        format!(
            "{doc} nests deeper than {MAX_YAML_DEPTH} levels (limit MAX_YAML_DEPTH); flatten it"
        )
    };
    let too_large = || format!("{doc} is larger than the limit {size_limit}; make it smaller");
    match e {
        E::WithSnippet { error, .. } => yaml_problem(doc, size_limit, error),
        E::Budget { breach, .. } => match breach {
            B::Aliases { .. }
            | B::Anchors { .. }
            | B::AliasAnchorRatio { .. }
            | B::RecordedAnchorEvents { .. }
            | B::RecordedAnchorBytes { .. }
            | B::MergeKeys { .. } => aliases(),
            B::Depth { .. } | B::InclusionDepth { .. } => depth(),
            B::Events { .. } | B::Nodes { .. } => format!(
                "{doc} has more than {MAX_YAML_EVENTS} YAML nodes (limit MAX_YAML_EVENTS); \
                 make it smaller"
            ),
            B::InputBytes { .. } | B::ScalarBytes { .. } => too_large(),
            B::Documents { .. } => format!("{doc} holds more than one YAML document"),
            _ => format!("{doc} exceeds the YAML parser's budget; make it smaller and simpler"),
        },
        E::AliasReplayLimitExceeded { .. }
        | E::AliasExpansionLimitExceeded { .. }
        | E::AliasReplayStackDepthExceeded { .. }
        | E::AliasReplayCounterOverflow { .. }
        | E::UnknownAnchor { .. } => aliases(),
        E::MultipleDocuments { .. } => format!("{doc} holds more than one YAML document"),
        // The scanner's own nesting limit (flow collections) can trip before the budget's.
        E::ExternalMessage { source, .. }
            if matches!(
                &**source,
                serde_saphyr::ExternalMessageSource::Parser(scan)
                    if matches!(scan.kind(), serde_saphyr::granit_parser::ErrorKind::RecursionLimitExceeded)
            ) =>
        {
            depth()
        }
        E::IOError { cause } if cause.kind() == std::io::ErrorKind::FileTooLarge => too_large(),
        other => format!(
            "{doc} is not valid: {}",
            one_line(&other.to_string(), 2 * QUOTE_LEN)
        ),
    }
}

/// Test strategies shared by the YAML parsers' property tests.
#[cfg(test)]
pub(super) mod strategies {
    use proptest::prelude::*;

    /// Text made of YAML's building blocks (indicators, anchors, aliases, tags, flow
    /// and block collections, the index's own keys), to reach deep into the parser.
    pub(in crate::engine::helm_repo) fn yamlish() -> impl Strategy<Value = String> {
        let token = prop_oneof![
            Just("entries:"),
            Just("apiVersion: v1"),
            Just("name: demo"),
            Just("version: "),
            Just("urls:"),
            Just("digest: "),
            Just("created: "),
            Just("demo"),
            Just("1.0.0"),
            Just("\n"),
            Just("  "),
            Just("- "),
            Just(": "),
            Just(", "),
            Just("["),
            Just("]"),
            Just("{"),
            Just("}"),
            Just("&a "),
            Just("*a"),
            Just("? "),
            Just("!!str "),
            Just("!custom "),
            Just("<<: "),
            Just("---\n"),
            Just("...\n"),
            Just("\""),
            Just("'"),
            Just("|\n"),
            Just(">-\n"),
            Just("# c\n"),
            Just("~"),
            Just("null"),
            Just("1e999"),
            Just("0x1F"),
            Just("\t"),
            Just("%YAML 1.2\n"),
            Just("\u{feff}"),
        ];
        prop::collection::vec(token, 0..96).prop_map(|tokens| tokens.concat())
    }
}
