//! What a `MATCH(...)` asks for, and the tantivy query that answers it.
//!
//! CrateDB's (Elasticsearch's) match types:
//! - `best_fields` (default): each field scores the query's terms (OR, or AND with `operator = 'and'`); a row's
//!   score is its best field's plus `tie_breaker` times the others';
//! - `most_fields`: the fields' scores add up;
//! - `phrase`: the terms in order, at most `slop` positions apart; `phrase_prefix`: the same with the last term a
//!   prefix (`max_expansions` terms);
//! - `query_string` (Kestrel's addition): tantivy's query language (`light AND "green plants" -animal`), where a
//!   malformed string is an error.
//!
//! Options: operator (or | and), minimum_should_match (a count or a percentage), fuzziness (0, 1, 2 or auto),
//! slop, tie_breaker, max_expansions, boost.

use super::analyzers::AnalyzerDef;
use datafusion::common::{plan_err, DataFusionError, Result};
use tantivy::query::{
    BooleanQuery, BoostQuery, DisjunctionMaxQuery, EmptyQuery, FuzzyTermQuery, Occur,
    PhrasePrefixQuery, PhraseQuery, Query, QueryParser, TermQuery,
};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{Index, Term};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchType {
    BestFields,
    MostFields,
    Phrase,
    PhrasePrefix,
    QueryString,
}

impl MatchType {
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name.to_ascii_lowercase().as_str() {
            "" | "best_fields" => MatchType::BestFields,
            "most_fields" => MatchType::MostFields,
            "phrase" => MatchType::Phrase,
            "phrase_prefix" => MatchType::PhrasePrefix,
            "query_string" => MatchType::QueryString,
            "cross_fields" => {
                return plan_err!(
                    "MATCH ... USING cross_fields is not supported: use most_fields (scores of the fields added) \
                     or a composite index over the fields (INDEX all_ft USING FULLTEXT (title, body))"
                )
            }
            other => {
                return plan_err!(
                    "unknown match type '{other}': use best_fields, most_fields, phrase, phrase_prefix or \
                     query_string"
                )
            }
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fuzziness {
    Edits(u8),
    Auto,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MinimumShouldMatch {
    Count(i64),
    Percent(f64),
}

/// `WITH (...)` of a MATCH.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MatchOptions {
    pub and: bool,
    pub fuzziness: Option<Fuzziness>,
    pub slop: u32,
    pub tie_breaker: f32,
    pub max_expansions: Option<u32>,
    pub minimum_should_match: Option<MinimumShouldMatch>,
    pub boost: Option<f32>,
}

impl MatchOptions {
    /// Reads `name = value` pairs (values as SQL text: `'and'`, `1`, `0.3`).
    pub fn parse(pairs: &[(String, String)]) -> Result<Self> {
        let mut o = MatchOptions::default();
        for (key, value) in pairs {
            let v = value.trim();
            let number = || -> Result<f64> {
                v.parse::<f64>().map_err(|_| {
                    DataFusionError::Plan(format!("MATCH option {key} must be a number, got '{v}'"))
                })
            };
            match key.to_ascii_lowercase().as_str() {
                "operator" => {
                    o.and = match v.to_ascii_lowercase().as_str() {
                        "and" => true,
                        "or" => false,
                        _ => return plan_err!("MATCH option operator is 'and' or 'or', got '{v}'"),
                    }
                }
                "fuzziness" => {
                    o.fuzziness = Some(if v.eq_ignore_ascii_case("auto") {
                        Fuzziness::Auto
                    } else {
                        match v.parse::<u8>() {
                            Ok(n) if n <= 2 => Fuzziness::Edits(n),
                            _ => {
                                return plan_err!(
                                    "MATCH option fuzziness is 0, 1, 2 or 'auto' (edits per term), got '{v}'"
                                )
                            }
                        }
                    })
                }
                "slop" => match v.parse::<u32>() {
                    Ok(n) => o.slop = n,
                    Err(_) => {
                        return plan_err!("MATCH option slop must be a whole number of positions, got '{v}'")
                    }
                },
                "tie_breaker" => {
                    let t = number()?;
                    if !(0.0..=1.0).contains(&t) {
                        return plan_err!("MATCH option tie_breaker must be between 0 and 1, got {t}");
                    }
                    o.tie_breaker = t as f32;
                }
                "max_expansions" => match v.parse::<u32>() {
                    Ok(n) if n > 0 => o.max_expansions = Some(n),
                    _ => return plan_err!("MATCH option max_expansions must be a positive integer, got '{v}'"),
                },
                "minimum_should_match" => {
                    o.minimum_should_match = Some(if let Some(p) = v.strip_suffix('%') {
                        match p.trim().parse::<f64>() {
                            Ok(p) if (-100.0..=100.0).contains(&p) => MinimumShouldMatch::Percent(p),
                            _ => {
                                return plan_err!(
                                    "MATCH option minimum_should_match is a count or a percentage, got '{v}'"
                                )
                            }
                        }
                    } else {
                        match v.parse::<i64>() {
                            Ok(n) => MinimumShouldMatch::Count(n),
                            Err(_) => {
                                return plan_err!(
                                    "MATCH option minimum_should_match is a count or a percentage, got '{v}'"
                                )
                            }
                        }
                    })
                }
                "boost" => o.boost = Some(number()? as f32),
                // Elasticsearch options CrateDB passes through that change nothing here
                "analyzer" => {
                    return plan_err!(
                        "MATCH option analyzer is not supported: a query is analyzed as its index is (choose the \
                         analyzer in CREATE INDEX ... WITH (analyzer = ...))"
                    )
                }
                other => {
                    return plan_err!(
                        "unknown MATCH option '{other}' (known: operator, fuzziness, slop, tie_breaker, \
                         max_expansions, minimum_should_match, boost)"
                    )
                }
            }
        }
        Ok(o)
    }
}

/// One index a MATCH searches, with its boost.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetRef {
    pub index: String,
    pub boost: f32,
}

/// A whole MATCH.
#[derive(Debug, Clone, PartialEq)]
pub struct MatchSpec {
    pub targets: Vec<TargetRef>,
    pub query: String,
    pub kind: MatchType,
    pub options: MatchOptions,
}

/// The query's terms as an analyzer makes them, with positions.
pub fn analyze(analyzer: &AnalyzerDef, text: &str) -> Result<Vec<(usize, String)>> {
    let mut a = analyzer.build()?;
    let mut stream = a.token_stream(text);
    let mut out = Vec::new();
    while stream.advance() {
        let t = stream.token();
        out.push((t.position, t.text.clone()));
    }
    Ok(out)
}

fn fuzzy_edits(f: Fuzziness, term: &str) -> u8 {
    match f {
        Fuzziness::Edits(n) => n,
        Fuzziness::Auto => match term.chars().count() {
            0..=2 => 0,
            3..=5 => 1,
            _ => 2,
        },
    }
}

fn boosted(q: Box<dyn Query>, boost: f32) -> Box<dyn Query> {
    if (boost - 1.0).abs() < f32::EPSILON {
        q
    } else {
        Box::new(BoostQuery::new(q, boost))
    }
}

/// The query of one field.
fn field_query(
    field: Field,
    analyzer: &AnalyzerDef,
    spec: &MatchSpec,
) -> Result<Option<Box<dyn Query>>> {
    let terms = analyze(analyzer, &spec.query)?;
    if terms.is_empty() {
        return Ok(None);
    }
    let o = &spec.options;
    let term = |t: &str| Term::from_field_text(field, t);
    Ok(Some(match spec.kind {
        MatchType::BestFields | MatchType::MostFields | MatchType::QueryString => {
            let clauses: Vec<(Occur, Box<dyn Query>)> = terms
                .iter()
                .map(|(_, t)| {
                    let q: Box<dyn Query> = match o.fuzziness.map(|f| fuzzy_edits(f, t)) {
                        Some(n) if n > 0 => Box::new(FuzzyTermQuery::new(term(t), n, true)),
                        _ => Box::new(TermQuery::new(term(t), IndexRecordOption::WithFreqs)),
                    };
                    (if o.and { Occur::Must } else { Occur::Should }, q)
                })
                .collect();
            let n = clauses.len() as i64;
            let minimum = match &o.minimum_should_match {
                None => 0,
                Some(MinimumShouldMatch::Count(c)) if *c >= 0 => (*c).min(n),
                Some(MinimumShouldMatch::Count(c)) => (n + c).max(0),
                Some(MinimumShouldMatch::Percent(p)) if *p >= 0.0 => {
                    ((n as f64) * p / 100.0).floor() as i64
                }
                Some(MinimumShouldMatch::Percent(p)) => {
                    n - ((n as f64) * -p / 100.0).floor() as i64
                }
            };
            if minimum > 1 && !o.and {
                Box::new(BooleanQuery::with_minimum_required_clauses(
                    clauses,
                    minimum as usize,
                ))
            } else {
                Box::new(BooleanQuery::new(clauses))
            }
        }
        MatchType::Phrase => {
            if terms.len() == 1 {
                Box::new(TermQuery::new(
                    term(&terms[0].1),
                    IndexRecordOption::WithFreqs,
                ))
            } else {
                Box::new(PhraseQuery::new_with_offset_and_slop(
                    terms.iter().map(|(p, t)| (*p, term(t))).collect(),
                    o.slop,
                ))
            }
        }
        MatchType::PhrasePrefix => {
            let mut q = PhrasePrefixQuery::new_with_offset(
                terms.iter().map(|(p, t)| (*p, term(t))).collect(),
            );
            q.set_max_expansions(o.max_expansions.unwrap_or(50));
            Box::new(q)
        }
    }))
}

/// The tantivy query for a MATCH over `targets` (field, analyzer, boost) of `index`.
pub fn build(
    index: &Index,
    targets: &[(Field, AnalyzerDef, f32)],
    spec: &MatchSpec,
) -> Result<Box<dyn Query>> {
    let overall = spec.options.boost.unwrap_or(1.0);
    if spec.kind == MatchType::QueryString {
        let mut parser = QueryParser::for_index(index, targets.iter().map(|t| t.0).collect());
        for (field, _, boost) in targets {
            parser.set_field_boost(*field, *boost);
        }
        if spec.options.and {
            parser.set_conjunction_by_default();
        }
        let q = parser.parse_query(&spec.query).map_err(|e| {
            DataFusionError::Plan(format!(
                "MATCH: malformed query string '{}': {e}",
                spec.query
            ))
        })?;
        return Ok(boosted(q, overall));
    }
    let mut per_field = Vec::with_capacity(targets.len());
    for (field, analyzer, boost) in targets {
        if let Some(q) = field_query(*field, analyzer, spec)? {
            per_field.push(boosted(q, *boost));
        }
    }
    let q: Box<dyn Query> = match (per_field.len(), spec.kind) {
        (0, _) => Box::new(EmptyQuery),
        (1, _) => per_field.pop().unwrap_or_else(|| Box::new(EmptyQuery)),
        (_, MatchType::MostFields) => Box::new(BooleanQuery::new(
            per_field.into_iter().map(|q| (Occur::Should, q)).collect(),
        )),
        _ => Box::new(DisjunctionMaxQuery::with_tie_breaker(
            per_field,
            spec.options.tie_breaker,
        )),
    };
    Ok(boosted(q, overall))
}
