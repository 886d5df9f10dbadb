//! The limits on a search's filter and `order_by`, which bound what one search can
//! cost the database (see the crate's "Limits" section).

use crate::{parse_order_by, Entity, FilterError, OrderBy, Value};

/// The longest filter accepted, in characters.
pub const MAX_FILTER_CHARS: usize = 16 * 1024;
/// The most clauses (joined by AND) a filter may have.
pub const MAX_CLAUSES: usize = 200;
/// The most values a filter's `IN` / `NOT IN` lists may hold together.
pub const MAX_LIST_VALUES: usize = 1000;
/// The most `order_by` clauses a search may have.
pub const MAX_ORDER_BY: usize = 10;

/// Refuses a filter longer than [`MAX_FILTER_CHARS`] before it is parsed.
pub(crate) fn check_length(input: &str) -> Result<(), FilterError> {
    if let Some((at, _)) = input.char_indices().nth(MAX_FILTER_CHARS) {
        let chars = MAX_FILTER_CHARS + input[at..].chars().count();
        return Err(FilterError::new(
            MAX_FILTER_CHARS,
            format!(
                "the filter is {chars} characters long; at most {MAX_FILTER_CHARS} are allowed: \
                 narrow the search in fewer clauses"
            ),
        ));
    }
    Ok(())
}

/// What a filter has used of its clause and list-value limits so far.
#[derive(Default)]
pub(crate) struct Budget {
    clauses: usize,
    list_values: usize,
}

impl Budget {
    /// Counts a clause starting at `at`, refusing the one past [`MAX_CLAUSES`].
    pub(crate) fn clause(&mut self, at: usize) -> Result<(), FilterError> {
        if self.clauses == MAX_CLAUSES {
            return Err(FilterError::new(
                at,
                format!(
                    "the filter has more than {MAX_CLAUSES} clauses, the most allowed: \
                     search with fewer conditions and filter the rest in the client"
                ),
            ));
        }
        self.clauses += 1;
        Ok(())
    }

    /// Counts the values of the clause at `at`, refusing past [`MAX_LIST_VALUES`].
    pub(crate) fn values(&mut self, at: usize, value: &Value) -> Result<(), FilterError> {
        if let Value::List(items) = value {
            self.list_values += items.len();
            if self.list_values > MAX_LIST_VALUES {
                return Err(FilterError::new(
                    at,
                    format!(
                        "the filter's IN lists hold more than {MAX_LIST_VALUES} values, \
                         the most allowed: search in several smaller steps"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Parses a search's `order_by` clauses, at most [`MAX_ORDER_BY`] of them.
pub fn parse_order_by_list<S: AsRef<str>>(
    inputs: &[S],
    entity: Entity,
) -> Result<Vec<OrderBy>, FilterError> {
    if inputs.len() > MAX_ORDER_BY {
        return Err(FilterError::order_by(
            0,
            format!(
                "{} order_by clauses given; at most {MAX_ORDER_BY} are allowed",
                inputs.len()
            ),
        ));
    }
    inputs
        .iter()
        .map(|o| parse_order_by(o.as_ref(), entity))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_filter;

    fn clauses(n: usize) -> String {
        vec!["tags.t = 'x'"; n].join(" AND ")
    }

    #[test]
    fn limits_are_inclusive_and_name_themselves() {
        assert!(parse_filter(&clauses(MAX_CLAUSES), Entity::Run).is_ok());
        let e = parse_filter(&clauses(MAX_CLAUSES + 1), Entity::Run).unwrap_err();
        assert!(e.message.contains("200 clauses"), "{e}");
        assert_eq!(e.position, MAX_CLAUSES * "tags.t = 'x' AND ".len());

        let list = |n: usize| {
            let v: Vec<String> = (0..n).map(|i| format!("'{i}'")).collect();
            format!("params.p IN ({})", v.join(","))
        };
        assert!(parse_filter(&list(MAX_LIST_VALUES), Entity::Run).is_ok());
        let e = parse_filter(&list(MAX_LIST_VALUES + 1), Entity::Run).unwrap_err();
        assert!(e.message.contains("1000 values"), "{e}");

        let long = |n: usize| format!("params.p = '{}'", "é".repeat(n - "params.p = ''".len()));
        assert!(parse_filter(&long(MAX_FILTER_CHARS), Entity::Run).is_ok());
        let e = parse_filter(&long(MAX_FILTER_CHARS + 1), Entity::Run).unwrap_err();
        assert!(e.message.contains("16385 characters"), "{e}");

        let orders = vec!["params.p"; MAX_ORDER_BY];
        assert_eq!(parse_order_by_list(&orders, Entity::Run).unwrap().len(), 10);
        let orders = vec!["params.p"; MAX_ORDER_BY + 1];
        assert!(parse_order_by_list(&orders, Entity::Run).is_err());
    }
}
