//! Property tests of the filter grammar.

use super::*;

// ---------------------------------------------------------------------------------------
// Property tests. They use a small deterministic PRNG (std only) so the module does not
// depend on a property-testing crate; every case is reproducible from its seed.
// ---------------------------------------------------------------------------------------

/// SplitMix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn random_case(rng: &mut Rng, word: &str) -> String {
    word.chars()
        .map(|c| {
            if rng.chance(50) {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

fn ws0(rng: &mut Rng) -> &'static str {
    rng_pick_str(rng, &["", "", " ", "  ", "\t", "\n "])
}

fn ws1(rng: &mut Rng) -> &'static str {
    rng_pick_str(rng, &[" ", " ", "  ", "\t", " \n", "   "])
}

const KEY_CHARS: &[char] = &[
    'a', 'b', 'z', 'A', 'Q', '0', '7', '_', '-', '.', '/', ':', 'é', '日', ' ', '`', '"', '\'',
    '\\', '@', '=', '(', ',', '%',
];
const VALUE_CHARS: &[char] = &[
    'a', 'x', 'F', '1', ' ', '%', '_', '\'', '"', '\\', '`', '(', ')', ',', 'é', '日', '\n', '=',
];

fn random_text(rng: &mut Rng, alphabet: &[char], min: usize, max: usize) -> String {
    let len = min + rng.below(max - min + 1);
    let mut out: String = (0..len).map(|_| *rng.pick(alphabet)).collect();
    if rng.chance(5) {
        let extra = rng_pick_str(rng, &["and", " OR ", "AND", "or"]);
        out.push_str(extra);
    }
    out
}

fn quote_with(s: &str, q: char) -> String {
    let mut out = String::new();
    out.push(q);
    for c in s.chars() {
        if c == q || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push(q);
    out
}

fn render_key(rng: &mut Rng, key: &str) -> String {
    let plain = !key.is_empty() && key.chars().all(is_plain_key_char);
    if plain && rng.chance(60) {
        key.to_string()
    } else {
        quote_with(key, *rng.pick(&['`', '"']))
    }
}

fn render_prefix(rng: &mut Rng, aliases: &[&str]) -> String {
    let alias = rng_pick_str(rng, aliases);
    let p = random_case(rng, alias);
    if rng.chance(10) {
        quote_with(&p, '`')
    } else {
        p
    }
}

fn rng_pick_str<'a>(rng: &mut Rng, items: &[&'a str]) -> &'a str {
    items[rng.below(items.len())]
}

fn attribute_spellings(a: Attribute) -> &'static [&'static str] {
    match a {
        Attribute::RunId => &["run_id"],
        Attribute::RunName => &["run_name", "run name", "Run name", "Run Name"],
        Attribute::Status => &["status"],
        Attribute::StartTime => &["start_time", "created", "Created"],
        Attribute::EndTime => &["end_time"],
        Attribute::UserId => &["user_id"],
        Attribute::ArtifactUri => &["artifact_uri"],
        Attribute::ExperimentName => &["name"],
        Attribute::CreationTime => &["creation_time"],
        Attribute::LastUpdateTime => &["last_update_time"],
        Attribute::ExperimentId => &["experiment_id"],
        Attribute::ModelName => &["name"],
        Attribute::VersionNumber => &["version_number"],
        Attribute::SourcePath => &["source_path"],
        Attribute::CreationTimestamp => &["creation_timestamp"],
        Attribute::LastUpdatedTimestamp => &["last_updated_timestamp"],
    }
}

fn render_field(rng: &mut Rng, field: &Field) -> String {
    match field {
        Field::Metric(k) => {
            let p = render_prefix(rng, &["metric", "metrics"]);
            format!("{p}.{}", render_key(rng, k))
        }
        Field::Param(k) => {
            let p = render_prefix(rng, &["param", "params", "parameter", "parameters"]);
            format!("{p}.{}", render_key(rng, k))
        }
        Field::Tag(k) => {
            let p = render_prefix(rng, &["tag", "tags"]);
            format!("{p}.{}", render_key(rng, k))
        }
        Field::Dataset(d) => {
            let p = render_prefix(rng, &["dataset", "datasets"]);
            format!("{p}.{}", render_key(rng, d.name()))
        }
        Field::Attribute(a) => {
            let name = rng_pick_str(rng, attribute_spellings(*a));
            let key = render_key(rng, name);
            if rng.chance(50) {
                key
            } else {
                let p = render_prefix(rng, &["attribute", "attributes", "attr", "run"]);
                format!("{p}.{key}")
            }
        }
    }
}

fn random_key(rng: &mut Rng) -> String {
    if rng.chance(40) {
        rng_pick_str(
            rng,
            &[
                "auc",
                "val.loss",
                "a-b/c:d",
                "x_1",
                "my metric",
                "précision",
            ],
        )
        .to_string()
    } else {
        random_text(rng, KEY_CHARS, 1, 8)
    }
}

fn random_field(rng: &mut Rng, entity: Entity) -> Field {
    match entity {
        Entity::Run => match rng.below(5) {
            0 => Field::Metric(random_key(rng)),
            1 => Field::Param(random_key(rng)),
            2 => Field::Tag(random_key(rng)),
            3 => Field::Attribute(*rng.pick(&[
                Attribute::RunId,
                Attribute::RunName,
                Attribute::Status,
                Attribute::StartTime,
                Attribute::EndTime,
                Attribute::UserId,
                Attribute::ArtifactUri,
            ])),
            _ => Field::Dataset(*rng.pick(&[
                DatasetField::Name,
                DatasetField::Digest,
                DatasetField::Context,
            ])),
        },
        Entity::Experiment => match rng.below(2) {
            0 => Field::Tag(random_key(rng)),
            _ => Field::Attribute(*rng.pick(&[
                Attribute::ExperimentName,
                Attribute::CreationTime,
                Attribute::LastUpdateTime,
            ])),
        },
        Entity::RegisteredModel => match rng.below(2) {
            0 => Field::Tag(random_key(rng)),
            _ => Field::Attribute(Attribute::ModelName),
        },
        Entity::ModelVersion => match rng.below(2) {
            0 => Field::Tag(random_key(rng)),
            _ => Field::Attribute(*rng.pick(&[
                Attribute::ModelName,
                Attribute::VersionNumber,
                Attribute::RunId,
                Attribute::SourcePath,
            ])),
        },
    }
}

/// A random field that `entity` can be ordered by.
fn random_order_field(rng: &mut Rng, entity: Entity) -> Field {
    let field = random_field(rng, entity);
    match (entity, field) {
        (Entity::Run, Field::Dataset(_)) => Field::Metric(random_key(rng)),
        (Entity::Experiment, _) if rng.chance(20) => Field::Attribute(Attribute::ExperimentId),
        (Entity::RegisteredModel | Entity::ModelVersion, _) if rng.chance(30) => {
            Field::Attribute(*rng.pick(&[
                Attribute::CreationTimestamp,
                Attribute::LastUpdatedTimestamp,
            ]))
        }
        (Entity::ModelVersion, Field::Attribute(Attribute::RunId | Attribute::SourcePath)) => {
            Field::Attribute(Attribute::VersionNumber)
        }
        (_, field) => field,
    }
}

/// A random entity, runs most often since their grammar is the largest.
fn random_entity(rng: &mut Rng) -> Entity {
    match rng.below(10) {
        0..=5 => Entity::Run,
        6 => Entity::Experiment,
        7 => Entity::RegisteredModel,
        _ => Entity::ModelVersion,
    }
}

const ENTITIES: [Entity; 4] = [
    Entity::Run,
    Entity::Experiment,
    Entity::RegisteredModel,
    Entity::ModelVersion,
];

/// A random finite number and a textual form of it.
fn random_number(rng: &mut Rng) -> (f64, String) {
    let n = match rng.below(4) {
        0 => rng.below(2001) as f64 - 1000.0,
        1 => (rng.below(2_000_001) as f64 - 1_000_000.0) / 10f64.powi(rng.below(8) as i32),
        2 => 1.7e12 + rng.below(1_000_000) as f64,
        _ => loop {
            let candidate = f64::from_bits(rng.next());
            if candidate.is_finite() {
                break candidate;
            }
        },
    };
    let mut text = match rng.below(3) {
        0 => format!("{n}"),
        1 => format!("{n:e}"),
        _ => format!("{n:E}"),
    };
    if n.is_sign_positive() && rng.chance(20) {
        text.insert(0, '+');
    }
    (n, text)
}

fn render_string(rng: &mut Rng, s: &str) -> String {
    quote_with(s, *rng.pick(&['\'', '"']))
}

/// A random valid clause and a random rendering of it.
fn random_clause(rng: &mut Rng, entity: Entity) -> (Clause, String) {
    let field = random_field(rng, entity);
    let op = *rng.pick(field.allowed_ops());
    let mut text = render_field(rng, &field);
    let value = match op {
        Op::IsNull | Op::IsNotNull => {
            text.push_str(ws1(rng));
            text.push_str(&random_case(rng, "is"));
            text.push_str(ws1(rng));
            if op == Op::IsNotNull {
                text.push_str(&random_case(rng, "not"));
                text.push_str(ws1(rng));
            }
            text.push_str(&random_case(rng, "null"));
            Value::None
        }
        Op::In | Op::NotIn => {
            text.push_str(ws1(rng));
            if op == Op::NotIn {
                text.push_str(&random_case(rng, "not"));
                text.push_str(ws1(rng));
            }
            text.push_str(&random_case(rng, "in"));
            text.push_str(ws0(rng));
            text.push('(');
            let n = 1 + rng.below(4);
            let mut items = Vec::new();
            for i in 0..n {
                if i > 0 {
                    text.push_str(ws0(rng));
                    text.push(',');
                }
                text.push_str(ws0(rng));
                let item = random_text(rng, VALUE_CHARS, 0, 6);
                text.push_str(&render_string(rng, &item));
                items.push(item);
            }
            text.push_str(ws0(rng));
            text.push(')');
            Value::List(items)
        }
        Op::Like | Op::ILike => {
            text.push_str(ws1(rng));
            text.push_str(&random_case(rng, op.as_str()));
            text.push_str(ws0(rng));
            let v = random_text(rng, VALUE_CHARS, 0, 8);
            text.push_str(&render_string(rng, &v));
            Value::Str(v)
        }
        _ => {
            text.push_str(ws0(rng));
            text.push_str(op.as_str());
            text.push_str(ws0(rng));
            if field.is_numeric() {
                let (n, t) = random_number(rng);
                text.push_str(&t);
                Value::Number(n)
            } else {
                let v = random_text(rng, VALUE_CHARS, 0, 8);
                text.push_str(&render_string(rng, &v));
                Value::Str(v)
            }
        }
    };
    (Clause { field, op, value }, text)
}

fn random_filter(rng: &mut Rng, entity: Entity) -> (Filter, String) {
    let n = 1 + rng.below(4);
    let mut clauses = Vec::new();
    let mut text = ws0(rng).to_string();
    for i in 0..n {
        if i > 0 {
            text.push_str(ws1(rng));
            text.push_str(&random_case(rng, "and"));
            text.push_str(ws1(rng));
        }
        let (c, t) = random_clause(rng, entity);
        clauses.push(c);
        text.push_str(&t);
    }
    text.push_str(ws0(rng));
    (Filter { clauses }, text)
}

#[test]
fn property_rendered_valid_filters_parse_back() {
    for seed in 0..4000u64 {
        let mut rng = Rng(seed);
        let entity = random_entity(&mut rng);
        let (expected, text) = random_filter(&mut rng, entity);
        match parse_filter(&text, entity) {
            Ok(parsed) => assert_eq!(parsed, expected, "seed {seed}: {text:?}"),
            Err(e) => panic!("seed {seed}: {text:?} failed: {e}"),
        }
        // The canonical rendering parses back too.
        let canonical = expected.to_string();
        assert_eq!(
            parse_filter(&canonical, entity).as_ref(),
            Ok(&expected),
            "seed {seed}: {canonical:?}"
        );
    }
}

#[test]
fn property_rendered_order_by_parses_back() {
    for seed in 0..2000u64 {
        let mut rng = Rng(seed);
        let entity = random_entity(&mut rng);
        let field = random_order_field(&mut rng, entity);
        let ascending = rng.chance(50);
        let mut text = ws0(&mut rng).to_string();
        text.push_str(&render_field(&mut rng, &field));
        if !ascending || rng.chance(50) {
            text.push_str(ws1(&mut rng));
            text.push_str(&random_case(
                &mut rng,
                if ascending { "asc" } else { "desc" },
            ));
        }
        text.push_str(ws0(&mut rng));
        let expected = OrderBy { field, ascending };
        assert_eq!(
            parse_order_by(&text, entity).as_ref(),
            Ok(&expected),
            "seed {seed}: {text:?}"
        );
    }
}

const FRAGMENTS: &[&str] = &[
    "metrics.",
    "params.",
    "tags.",
    "attributes.",
    "datasets.",
    "attr.",
    "run.",
    "auc",
    "val.loss",
    "status",
    "start_time",
    "created",
    "name",
    "run_id",
    "version_number",
    "source_path",
    "creation_timestamp",
    "`Run name`",
    " ",
    "  ",
    "\t",
    "=",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "==",
    "LIKE",
    "ilike",
    "IN",
    "NOT",
    "IS",
    "NULL",
    "and",
    "AND",
    "OR",
    "'",
    "\"",
    "`",
    "\\",
    "(",
    ")",
    ",",
    "1",
    "-0.5",
    "1e-3",
    ".5",
    "e",
    "+",
    "-",
    ".",
    "x",
    "é",
    "日本",
    "\n",
    "@",
    "'rf'",
    "\"x\"",
    "('a', 'b')",
    "ASC",
    "desc",
];

fn random_input(rng: &mut Rng) -> String {
    let mut out = String::new();
    let n = rng.below(14);
    for _ in 0..n {
        if rng.chance(20) {
            let c = char::from_u32(rng.below(0x3000) as u32).unwrap_or('?');
            out.push(c);
        } else {
            let frag = rng_pick_str(rng, FRAGMENTS);
            out.push_str(frag);
        }
    }
    out
}

/// Deletes, duplicates or replaces a few characters of a valid filter.
fn mutate(rng: &mut Rng, text: &str) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for _ in 0..1 + rng.below(3) {
        if chars.is_empty() {
            break;
        }
        let i = rng.below(chars.len());
        match rng.below(3) {
            0 => {
                chars.remove(i);
            }
            1 => {
                let c = chars[i];
                chars.insert(i, c);
            }
            _ => {
                let frag = rng_pick_str(rng, FRAGMENTS);
                let frag: Vec<char> = frag.chars().collect();
                chars.splice(i..i + 1, frag);
            }
        }
    }
    chars.into_iter().collect()
}

fn check_never_panics(input: &str) {
    let len = input.chars().count();
    for entity in ENTITIES {
        let filter = std::panic::catch_unwind(|| parse_filter(input, entity));
        match filter {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                assert!(e.position <= len, "{input:?}: {e} beyond {len}");
                assert_eq!(e.context, ErrorContext::Filter);
                assert!(!e.message.is_empty());
            }
            Err(_) => panic!("parse_filter panicked on {input:?}"),
        }
        let order = std::panic::catch_unwind(|| parse_order_by(input, entity));
        match order {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                assert!(e.position <= len, "{input:?}: {e} beyond {len}");
                assert_eq!(e.context, ErrorContext::OrderBy);
            }
            Err(_) => panic!("parse_order_by panicked on {input:?}"),
        }
    }
}

#[test]
fn property_never_panics_and_positions_in_bounds() {
    for seed in 0..6000u64 {
        let mut rng = Rng(seed.wrapping_mul(7919).wrapping_add(1));
        let input = random_input(&mut rng);
        check_never_panics(&input);
    }
    for seed in 0..3000u64 {
        let mut rng = Rng(seed.wrapping_add(1 << 40));
        let entity = random_entity(&mut rng);
        let (_, text) = random_filter(&mut rng, entity);
        let input = mutate(&mut rng, &text);
        check_never_panics(&input);
    }
}
