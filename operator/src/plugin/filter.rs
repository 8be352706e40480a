//! Get-Queue's `-Filter`, the part of Exchange's OPATH syntax that queue rows need:
//! comparisons `Property -op Value` joined by `-and`, e.g.
//! `"Status -eq 'Retry' -and MessageCount -gt 10"`. Text compares without regard to case
//! (`-like` with `*` and `?` wildcards); `$null` stands for an absent value.
use transport::api::QueueInfo;

/// A parsed `--filter`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueFilter {
    terms: Vec<Term>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Term {
    property: Property,
    op: Op,
    value: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Property {
    Identity,
    ServerName,
    DeliveryType,
    NextHopDomain,
    NextHopConnector,
    Status,
    MessageCount,
    LastError,
    RetryCount,
}

const PROPERTIES: [(&str, Property); 9] = [
    ("Identity", Property::Identity),
    ("ServerName", Property::ServerName),
    ("DeliveryType", Property::DeliveryType),
    ("NextHopDomain", Property::NextHopDomain),
    ("NextHopConnector", Property::NextHopConnector),
    ("Status", Property::Status),
    ("MessageCount", Property::MessageCount),
    ("LastError", Property::LastError),
    ("RetryCount", Property::RetryCount),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Like,
    NotLike,
}

const OPS: [(&str, Op); 8] = [
    ("-eq", Op::Eq),
    ("-ne", Op::Ne),
    ("-gt", Op::Gt),
    ("-ge", Op::Ge),
    ("-lt", Op::Lt),
    ("-le", Op::Le),
    ("-like", Op::Like),
    ("-notlike", Op::NotLike),
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Null,
    Number(u64),
    Text(String),
}

impl Property {
    fn numeric(self) -> bool {
        matches!(self, Property::MessageCount | Property::RetryCount)
    }
}

/// A property's value on one row.
enum Field<'a> {
    Number(u64),
    Text(Option<String>),
    Borrowed(Option<&'a str>),
}

fn field<'a>(property: Property, server: &'a str, q: &'a QueueInfo) -> Field<'a> {
    match property {
        Property::Identity => Field::Borrowed(Some(&q.identity)),
        Property::ServerName => Field::Borrowed(Some(server)),
        Property::DeliveryType => Field::Text(Some(format!("{:?}", q.delivery_type))),
        Property::NextHopDomain => Field::Borrowed(Some(&q.next_hop_domain)),
        Property::NextHopConnector => Field::Borrowed(q.next_hop_connector.as_deref()),
        Property::Status => Field::Text(Some(format!("{:?}", q.status))),
        Property::MessageCount => Field::Number(q.message_count),
        Property::LastError => Field::Borrowed(q.last_error.as_deref()),
        Property::RetryCount => Field::Number(u64::from(q.retry_count)),
    }
}

impl QueueFilter {
    /// Whether the queue row of `server` passes every comparison.
    pub fn matches(&self, server: &str, q: &QueueInfo) -> bool {
        self.terms.iter().all(|t| t.matches(server, q))
    }
}

impl Term {
    fn matches(&self, server: &str, q: &QueueInfo) -> bool {
        match field(self.property, server, q) {
            Field::Number(n) => match &self.value {
                Value::Number(v) => compare(self.op, n.cmp(v)),
                Value::Null => self.op == Op::Ne,
                // `-like` on a number compares its digits.
                Value::Text(pattern) => like(self.op, &n.to_string(), pattern),
            },
            Field::Text(t) => self.text(t.as_deref()),
            Field::Borrowed(t) => self.text(t),
        }
    }

    fn text(&self, actual: Option<&str>) -> bool {
        let actual = actual.filter(|a| !a.is_empty());
        match (&self.value, actual) {
            (Value::Null, a) => (self.op == Op::Eq) == a.is_none(),
            (_, None) => matches!(self.op, Op::Ne | Op::NotLike),
            (Value::Text(v), Some(a)) => match self.op {
                Op::Like | Op::NotLike => like(self.op, a, v),
                op => compare(op, a.to_lowercase().cmp(&v.to_lowercase())),
            },
            (Value::Number(v), Some(a)) => compare(self.op, a.to_lowercase().cmp(&v.to_string())),
        }
    }
}

fn compare(op: Op, ordering: std::cmp::Ordering) -> bool {
    use std::cmp::Ordering::*;
    match op {
        Op::Eq | Op::Like => ordering == Equal,
        Op::Ne | Op::NotLike => ordering != Equal,
        Op::Gt => ordering == Greater,
        Op::Ge => ordering != Less,
        Op::Lt => ordering == Less,
        Op::Le => ordering != Greater,
    }
}

fn like(op: Op, text: &str, pattern: &str) -> bool {
    let found =
        wildcard(&text.to_lowercase().chars().collect::<Vec<_>>(), &pattern.to_lowercase().chars().collect::<Vec<_>>());
    match op {
        Op::NotLike | Op::Ne => !found,
        _ => found,
    }
}

/// `*` any run of characters, `?` one character.
fn wildcard(text: &[char], pattern: &[char]) -> bool {
    // Row i of the table: which prefixes of the text the first i pattern characters match.
    let mut row = vec![false; text.len() + 1];
    row[0] = true;
    for p in pattern {
        let mut next = vec![false; text.len() + 1];
        for j in 0..=text.len() {
            next[j] = match p {
                '*' => row[j] || (j > 0 && next[j - 1]),
                '?' => j > 0 && row[j - 1],
                c => j > 0 && row[j - 1] && text[j - 1] == *c,
            };
        }
        row = next;
    }
    row[text.len()]
}

/// The words of a filter: quotes (`'...'` or `"..."`) keep spaces inside a value.
fn words(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '\'' || c == '"' {
            chars.next();
            let mut word = String::new();
            loop {
                match chars.next() {
                    Some(q) if q == c => break,
                    Some(x) => word.push(x),
                    None => return Err(format!("the quote {c} opened before {word:?} is not closed")),
                }
            }
            out.push(word);
        } else {
            let mut word = String::new();
            while let Some(&x) = chars.peek().filter(|x| !x.is_whitespace()) {
                word.push(x);
                chars.next();
            }
            out.push(word);
        }
    }
    Ok(out)
}

impl std::str::FromStr for QueueFilter {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let names = || PROPERTIES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ");
        let words = words(text)?;
        let mut terms = Vec::new();
        let mut rest = words.as_slice();
        loop {
            let [property, op, value, tail @ ..] = rest else {
                return Err(format!("filter {text:?}: write Property -op Value, e.g. \"MessageCount -gt 10\""));
            };
            let property = PROPERTIES
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(property))
                .map(|(_, p)| *p)
                .ok_or_else(|| format!("filter: {property:?} is no queue property ({})", names()))?;
            let op = OPS.iter().find(|(n, _)| n.eq_ignore_ascii_case(op)).map(|(_, o)| *o).ok_or_else(|| {
                let ops: Vec<&str> = OPS.iter().map(|(n, _)| *n).collect();
                format!("filter: {op:?} is no comparison ({})", ops.join(", "))
            })?;
            let value = if value.eq_ignore_ascii_case("$null") {
                Value::Null
            } else if let Ok(n) = value.parse::<u64>() {
                Value::Number(n)
            } else {
                Value::Text(value.clone())
            };
            let ordered = matches!(op, Op::Gt | Op::Ge | Op::Lt | Op::Le);
            if property.numeric() && matches!(value, Value::Text(_)) && !matches!(op, Op::Like | Op::NotLike) {
                return Err(format!("filter: {property:?} is a number, not {value:?}"));
            }
            if ordered && !(property.numeric() && matches!(value, Value::Number(_))) {
                return Err(format!(
                    "filter: -gt, -ge, -lt and -le compare numbers (MessageCount, RetryCount), not {property:?}"
                ));
            }
            terms.push(Term { property, op, value });
            match tail {
                [] => break,
                [and, more @ ..] if and.eq_ignore_ascii_case("-and") => rest = more,
                [other, ..] => return Err(format!("filter: comparisons are joined by -and, not {other:?}")),
            }
        }
        Ok(QueueFilter { terms })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use transport::api::{DeliveryType, QueueStatus};

    fn queue(status: QueueStatus, count: u64, error: Option<&str>) -> QueueInfo {
        QueueInfo {
            identity: "mail-0\\3".into(),
            id: "3".into(),
            delivery_type: DeliveryType::SmartHostConnectorDelivery,
            next_hop_domain: "later.test".into(),
            next_hop_connector: Some("Later".into()),
            status,
            message_count: count,
            last_error: error.map(str::to_string),
            last_retry_time: None,
            next_retry_time: None,
            first_retry_time: None,
            retry_count: 2,
        }
    }

    fn passes(filter: &str, q: &QueueInfo) -> bool {
        filter.parse::<QueueFilter>().unwrap_or_else(|e| panic!("{e}")).matches("mail-0", q)
    }

    #[test]
    fn comparisons_joined_by_and() {
        let retry = queue(QueueStatus::Retry, 12, Some("451 4.4.0 connection refused"));
        assert!(passes("Status -eq 'Retry' -and MessageCount -gt 10", &retry));
        assert!(passes("status -EQ retry -and messagecount -ge 12", &retry));
        assert!(!passes("Status -eq Retry -and MessageCount -gt 12", &retry));
        assert!(passes("DeliveryType -ne ShadowRedundancy", &retry));
        assert!(passes("LastError -like '*connection refused'", &retry));
        assert!(passes("NextHopDomain -like 'lat?r.*'", &retry));
        assert!(passes("Identity -notlike '*Shadow*'", &retry));
        assert!(passes("ServerName -eq mail-0 -and RetryCount -lt 3", &retry));
        assert!(passes("LastError -ne $null", &retry));
        let ready = queue(QueueStatus::Ready, 0, None);
        assert!(passes("LastError -eq $null", &ready));
        assert!(!passes("LastError -like '*'", &ready));
        assert!(passes("MessageCount -eq 0", &ready));
        assert!(passes("\"NextHopConnector\" -eq \"later\"", &ready));
    }

    #[test]
    fn a_bad_filter_says_what_is_wrong() {
        let err = |f: &str| f.parse::<QueueFilter>().unwrap_err();
        assert!(err("Size -gt 3").contains("no queue property"), "{}", err("Size -gt 3"));
        assert!(err("MessageCount -greater 3").contains("no comparison"));
        assert!(err("MessageCount -gt many").contains("is a number"));
        assert!(err("Status -gt Retry").contains("compare numbers"));
        assert!(err("Status -eq Retry -or Status -eq Ready").contains("joined by -and"));
        assert!(err("Status -eq").contains("Property -op Value"));
        assert!(err("LastError -eq 'open").contains("not closed"));
    }

    #[test]
    fn wildcards() {
        let w = |t: &str, p: &str| wildcard(&t.chars().collect::<Vec<_>>(), &p.chars().collect::<Vec<_>>());
        assert!(w("abc", "a*"));
        assert!(w("abc", "*c"));
        assert!(w("abc", "a?c"));
        assert!(w("", "*"));
        assert!(!w("abc", "a?"));
        assert!(!w("abc", "b*"));
    }
}
