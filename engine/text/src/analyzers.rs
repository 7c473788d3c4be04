//! Analyzers: how text becomes the terms a full-text index stores and a MATCH query looks up.
//!
//! Built in (the names CrateDB and Elasticsearch use):
//! - `standard`: words (runs of letters and digits), lower-cased, words of 40 bytes or more dropped;
//! - `english`, `german`, `french`, ... : `standard` plus the language's stop words and its Snowball stemmer;
//! - `simple`: `standard` without the length limit; `whitespace`: split on spaces, case kept; `keyword`: the whole
//!   value is one term.
//!
//! `CREATE ANALYZER name (TOKENIZER t [WITH (...)], TOKEN_FILTERS (f [WITH (...)], ...))` defines more: tokenizers
//! standard, whitespace, keyword, ngram / edge_ngram (min_gram, max_gram); filters lowercase, asciifolding,
//! stop (language or a stopwords list), stemmer (language), length (max), and the stemmer aliases porter_stem,
//! kstem, snowball (English).

use datafusion::common::{plan_err, DataFusionError, Result};
use std::collections::BTreeMap;
use std::sync::RwLock;
use tantivy::tokenizer::{
    AsciiFoldingFilter, Language, LowerCaser, NgramTokenizer, RawTokenizer, RemoveLongFilter,
    SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer, WhitespaceTokenizer,
};

/// The analyzer used when an index names none.
pub const DEFAULT_ANALYZER: &str = "standard";

/// The longest word (in bytes) the standard analyzers keep: tantivy's default analyzer drops tokens of 40 bytes
/// and more, and matching it keeps scores equal to tantivy's.
const LONGEST_WORD: usize = 39;

/// The languages with a stemmer, by the names an analyzer is called.
const LANGUAGES: &[(&str, Language)] = &[
    ("arabic", Language::Arabic),
    ("danish", Language::Danish),
    ("dutch", Language::Dutch),
    ("english", Language::English),
    ("finnish", Language::Finnish),
    ("french", Language::French),
    ("german", Language::German),
    ("greek", Language::Greek),
    ("hungarian", Language::Hungarian),
    ("italian", Language::Italian),
    ("norwegian", Language::Norwegian),
    ("portuguese", Language::Portuguese),
    ("romanian", Language::Romanian),
    ("russian", Language::Russian),
    ("spanish", Language::Spanish),
    ("swedish", Language::Swedish),
    ("tamil", Language::Tamil),
    ("turkish", Language::Turkish),
];

fn language(name: &str) -> Option<Language> {
    LANGUAGES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, l)| *l)
}

fn language_names() -> String {
    LANGUAGES
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// How text is split into tokens.
#[derive(Debug, Clone, PartialEq)]
pub enum Tokenizer {
    /// Runs of letters and digits.
    Standard,
    Whitespace,
    /// The whole value.
    Keyword,
    /// Every n-gram of length min..=max (`prefix_only`: only those starting the value).
    Ngram {
        min: usize,
        max: usize,
        prefix_only: bool,
    },
}

/// What is done to each token.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Lowercase,
    AsciiFolding,
    /// Drops tokens longer than this many bytes.
    Length(usize),
    /// A language's stop words, or a list.
    Stop(StopWords),
    Stemmer(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum StopWords {
    Language(String),
    List(Vec<String>),
}

/// A named analyzer: a tokenizer and filters, applied in order.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalyzerDef {
    pub name: String,
    pub tokenizer: Tokenizer,
    pub filters: Vec<Filter>,
    pub builtin: bool,
}

impl AnalyzerDef {
    /// A built-in analyzer by name.
    pub fn builtin(name: &str) -> Option<AnalyzerDef> {
        let lower = name.to_ascii_lowercase();
        let standard = vec![Filter::Length(LONGEST_WORD), Filter::Lowercase];
        let (tokenizer, filters) = match lower.as_str() {
            "standard" | "default" => (Tokenizer::Standard, standard),
            "simple" => (Tokenizer::Standard, vec![Filter::Lowercase]),
            "whitespace" => (Tokenizer::Whitespace, vec![]),
            "keyword" => (Tokenizer::Keyword, vec![]),
            l => {
                let _ = language(l)?;
                let mut filters = standard;
                if StopWordFilter::new(language(l)?).is_some() {
                    filters.push(Filter::Stop(StopWords::Language(l.to_string())));
                }
                filters.push(Filter::Stemmer(l.to_string()));
                (Tokenizer::Standard, filters)
            }
        };
        Some(AnalyzerDef {
            name: lower,
            tokenizer,
            filters,
            builtin: true,
        })
    }

    /// A one-line description for sys tables and messages: `standard | lowercase, stop(english), stemmer(english)`.
    pub fn describe(&self) -> String {
        let tokenizer = match &self.tokenizer {
            Tokenizer::Standard => "standard".to_string(),
            Tokenizer::Whitespace => "whitespace".to_string(),
            Tokenizer::Keyword => "keyword".to_string(),
            Tokenizer::Ngram {
                min,
                max,
                prefix_only,
            } => format!(
                "{}({min}..{max})",
                if *prefix_only { "edge_ngram" } else { "ngram" }
            ),
        };
        let filters: Vec<String> = self
            .filters
            .iter()
            .map(|f| match f {
                Filter::Lowercase => "lowercase".to_string(),
                Filter::AsciiFolding => "asciifolding".to_string(),
                Filter::Length(n) => format!("length(max {n})"),
                Filter::Stop(StopWords::Language(l)) => format!("stop({l})"),
                Filter::Stop(StopWords::List(w)) => format!("stop({} words)", w.len()),
                Filter::Stemmer(l) => format!("stemmer({l})"),
            })
            .collect();
        if filters.is_empty() {
            tokenizer
        } else {
            format!("{tokenizer} | {}", filters.join(", "))
        }
    }

    /// The tantivy analyzer that does this.
    pub fn build(&self) -> Result<TextAnalyzer> {
        let builder = match &self.tokenizer {
            Tokenizer::Standard => TextAnalyzer::builder(SimpleTokenizer::default()).dynamic(),
            Tokenizer::Whitespace => {
                TextAnalyzer::builder(WhitespaceTokenizer::default()).dynamic()
            }
            Tokenizer::Keyword => TextAnalyzer::builder(RawTokenizer::default()).dynamic(),
            Tokenizer::Ngram {
                min,
                max,
                prefix_only,
            } => {
                let t = NgramTokenizer::new(*min, *max, *prefix_only).map_err(|e| {
                    DataFusionError::Plan(format!("analyzer {}: ngram tokenizer: {e}", self.name))
                })?;
                TextAnalyzer::builder(t).dynamic()
            }
        };
        let mut builder = builder;
        for f in &self.filters {
            builder = match f {
                Filter::Lowercase => builder.filter_dynamic(LowerCaser),
                Filter::AsciiFolding => builder.filter_dynamic(AsciiFoldingFilter),
                Filter::Length(n) => builder.filter_dynamic(RemoveLongFilter::limit(*n + 1)),
                Filter::Stop(StopWords::List(words)) => {
                    builder.filter_dynamic(StopWordFilter::remove(words.iter().cloned()))
                }
                Filter::Stop(StopWords::Language(l)) => {
                    let filter = language(l).and_then(StopWordFilter::new).ok_or_else(|| {
                        DataFusionError::Plan(format!(
                            "analyzer {}: no stop word list for '{l}'",
                            self.name
                        ))
                    })?;
                    builder.filter_dynamic(filter)
                }
                Filter::Stemmer(l) => {
                    let lang = language(l).ok_or_else(|| {
                        DataFusionError::Plan(format!(
                            "analyzer {}: no stemmer for '{l}' (stemmers: {})",
                            self.name,
                            language_names()
                        ))
                    })?;
                    builder.filter_dynamic(Stemmer::new(lang))
                }
            };
        }
        Ok(builder.build())
    }
}

/// The session's analyzers: the built-in ones plus those made by CREATE ANALYZER.
#[derive(Debug, Default)]
pub struct Analyzers {
    custom: RwLock<BTreeMap<String, AnalyzerDef>>,
}

impl Analyzers {
    /// The analyzer called `name` (case-insensitive), or an error listing the known ones.
    pub fn get(&self, name: &str) -> Result<AnalyzerDef> {
        let key = name.to_ascii_lowercase();
        if let Some(a) = self.custom.read().ok().and_then(|c| c.get(&key).cloned()) {
            return Ok(a);
        }
        AnalyzerDef::builtin(&key).ok_or_else(|| {
            DataFusionError::Plan(format!(
                "unknown analyzer '{name}': use standard, simple, whitespace, keyword, a language ({}){}",
                language_names(),
                self.custom_names()
                    .map(|n| format!(", or one made by CREATE ANALYZER ({n})"))
                    .unwrap_or_else(|| ", or make one with CREATE ANALYZER".into())
            ))
        })
    }

    fn custom_names(&self) -> Option<String> {
        let c = self.custom.read().ok()?;
        (!c.is_empty()).then(|| c.keys().cloned().collect::<Vec<_>>().join(", "))
    }

    /// Every analyzer: built-in first, then the session's own.
    pub fn all(&self) -> Vec<AnalyzerDef> {
        let mut out: Vec<AnalyzerDef> = ["standard", "simple", "whitespace", "keyword"]
            .iter()
            .chain(LANGUAGES.iter().map(|(n, _)| n))
            .filter_map(|n| AnalyzerDef::builtin(n))
            .collect();
        if let Ok(c) = self.custom.read() {
            out.extend(c.values().cloned());
        }
        out
    }

    /// CREATE ANALYZER: checks that the definition builds, then keeps it.
    pub fn create(&self, def: AnalyzerDef, or_replace: bool) -> Result<String> {
        if AnalyzerDef::builtin(&def.name).is_some() {
            return plan_err!(
                "analyzer {} is built in; choose another name for your own",
                def.name
            );
        }
        def.build()?;
        let mut custom = self
            .custom
            .write()
            .map_err(|_| DataFusionError::Internal("analyzer registry poisoned".into()))?;
        if custom.contains_key(&def.name) && !or_replace {
            return plan_err!(
                "analyzer {} already exists (CREATE OR REPLACE ANALYZER to change it; indexes built with it keep \
                 the old definition until they are rebuilt)",
                def.name
            );
        }
        let message = format!("Created analyzer {}: {}", def.name, def.describe());
        custom.insert(def.name.clone(), def);
        Ok(message)
    }

    pub fn drop_analyzer(&self, name: &str, if_exists: bool) -> Result<String> {
        let key = name.to_ascii_lowercase();
        let removed = self
            .custom
            .write()
            .map_err(|_| DataFusionError::Internal("analyzer registry poisoned".into()))?
            .remove(&key);
        match removed {
            Some(_) => Ok(format!("Dropped analyzer {key}")),
            None if if_exists => Ok(format!("Analyzer {key} does not exist; nothing changed")),
            None if AnalyzerDef::builtin(&key).is_some() => {
                plan_err!("analyzer {key} is built in and cannot be dropped")
            }
            None => plan_err!("analyzer {key} does not exist"),
        }
    }
}

/// Builds a custom analyzer's tokenizer from its name and options (`ngram WITH (min_gram = 2, max_gram = 3)`).
pub fn tokenizer(name: &str, options: &BTreeMap<String, OptionValue>) -> Result<Tokenizer> {
    let int = |key: &str, default: usize| -> Result<usize> {
        match options.get(key) {
            None => Ok(default),
            Some(OptionValue::Number(n)) if *n >= 1.0 && n.fract() == 0.0 => Ok(*n as usize),
            Some(v) => plan_err!("tokenizer {name}: {key} must be a positive integer, got {v:?}"),
        }
    };
    let kind = options
        .get("type")
        .and_then(|v| v.text())
        .unwrap_or(name)
        .to_ascii_lowercase();
    match kind.as_str() {
        "standard" | "letter" | "lowercase" | "classic" => Ok(Tokenizer::Standard),
        "whitespace" => Ok(Tokenizer::Whitespace),
        "keyword" => Ok(Tokenizer::Keyword),
        "ngram" | "edge_ngram" | "edgengram" | "edgeNGram" => {
            let min = int("min_gram", 1)?;
            let max = int("max_gram", 2)?;
            if min > max {
                return plan_err!(
                    "tokenizer {name}: min_gram {min} is greater than max_gram {max}"
                );
            }
            Ok(Tokenizer::Ngram {
                min,
                max,
                prefix_only: kind != "ngram",
            })
        }
        other => plan_err!(
            "unknown tokenizer '{other}': use standard, whitespace, keyword, ngram or edge_ngram"
        ),
    }
}

/// Builds a custom analyzer's token filter from its name and options.
pub fn filter(name: &str, options: &BTreeMap<String, OptionValue>) -> Result<Filter> {
    let kind = options
        .get("type")
        .and_then(|v| v.text())
        .unwrap_or(name)
        .to_ascii_lowercase();
    match kind.as_str() {
        "lowercase" => Ok(Filter::Lowercase),
        "asciifolding" | "ascii_folding" => Ok(Filter::AsciiFolding),
        "length" => match options.get("max") {
            Some(OptionValue::Number(n)) if *n >= 1.0 => Ok(Filter::Length(*n as usize)),
            None => Ok(Filter::Length(LONGEST_WORD)),
            Some(v) => plan_err!("token filter {name}: max must be a positive integer, got {v:?}"),
        },
        "porter_stem" | "kstem" | "snowball" | "porter" => {
            let l = options
                .get("language")
                .and_then(|v| v.text())
                .unwrap_or("english");
            stemmer(name, l)
        }
        "stemmer" => {
            let l = options
                .get("language")
                .or_else(|| options.get("name"))
                .and_then(|v| v.text())
                .unwrap_or("english");
            stemmer(name, l)
        }
        "stop" => match options.get("stopwords") {
            None => Ok(Filter::Stop(StopWords::Language("english".into()))),
            Some(OptionValue::Text(l)) => {
                let l = l.trim_matches('_').to_ascii_lowercase();
                match language(&l).and_then(StopWordFilter::new) {
                    Some(_) => Ok(Filter::Stop(StopWords::Language(l))),
                    None => plan_err!("token filter {name}: no stop word list for '{l}'"),
                }
            }
            Some(OptionValue::List(words)) => Ok(Filter::Stop(StopWords::List(
                words.iter().map(|w| w.to_lowercase()).collect(),
            ))),
            Some(v) => plan_err!(
                "token filter {name}: stopwords is a language or a list of words, got {v:?}"
            ),
        },
        other => {
            if language(other).is_some() {
                return stemmer(name, other);
            }
            plan_err!(
                "unknown token filter '{other}': use lowercase, asciifolding, length, stop, stemmer, porter_stem, \
                 kstem or snowball"
            )
        }
    }
}

fn stemmer(name: &str, l: &str) -> Result<Filter> {
    match language(l) {
        Some(_) => Ok(Filter::Stemmer(l.to_ascii_lowercase())),
        None => plan_err!(
            "token filter {name}: no stemmer for '{l}' (stemmers: {})",
            language_names()
        ),
    }
}

/// A value in `WITH (key = value)`.
#[derive(Debug, Clone, PartialEq)]
pub enum OptionValue {
    Text(String),
    Number(f64),
    List(Vec<String>),
}

impl OptionValue {
    pub fn text(&self) -> Option<&str> {
        match self {
            OptionValue::Text(s) => Some(s),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(def: &AnalyzerDef, text: &str) -> Vec<String> {
        let mut a = def.build().expect("analyzer builds");
        let mut stream = a.token_stream(text);
        let mut out = Vec::new();
        while stream.advance() {
            out.push(stream.token().text.clone());
        }
        out
    }

    #[test]
    fn english_stems_and_drops_stop_words() {
        let a = AnalyzerDef::builtin("english").expect("english is built in");
        assert_eq!(
            terms(&a, "The Plants are making FOOD from light"),
            vec!["plant", "make", "food", "from", "light"]
        );
        let s = AnalyzerDef::builtin("standard").expect("standard");
        assert_eq!(terms(&s, "The Plants"), vec!["the", "plants"]);
    }

    #[test]
    fn unknown_analyzer_names_the_known_ones() {
        let e = Analyzers::default().get("klingon").unwrap_err().to_string();
        assert!(
            e.contains("unknown analyzer 'klingon'") && e.contains("english"),
            "{e}"
        );
    }

    #[test]
    fn custom_analyzers_build_from_parts() {
        let a = AnalyzerDef {
            name: "tags".into(),
            tokenizer: tokenizer("whitespace", &BTreeMap::new()).expect("tokenizer"),
            filters: vec![
                filter("lowercase", &BTreeMap::new()).expect("lowercase"),
                Filter::Stop(StopWords::List(vec!["x".into()])),
            ],
            builtin: false,
        };
        assert_eq!(terms(&a, "A-b X c"), vec!["a-b", "c"]);
        let reg = Analyzers::default();
        assert!(reg.create(a.clone(), false).is_ok());
        assert!(reg.create(a, false).is_err());
        assert!(reg.get("TAGS").is_ok());
    }
}
