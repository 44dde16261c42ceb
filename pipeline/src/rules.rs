//! Stage 3a, rules: rule segments, decided before clustering.
//!
//! A **rule** has a name and a condition over the partners' raw column
//! values, e.g. `tenure_months < 6` or `portal_logins_90d == 0 &&
//! revenue_12m < 1000`. Rules are evaluated in order; a partner belongs to the
//! first rule it matches and leaves the clustering. Conditions are parsed by
//! evalexpr (its grammar: `== != < <= > >= && || ! + - * /`, numbers,
//! "strings", parentheses) and evaluated here, column by column, on whole
//! vectors, which keeps 10M partners fast. Only those operators, constants
//! and column names are allowed: no functions, no assignments, no chains, so
//! a rule cannot read files, run programs or loop.
//!
//! Missing values: any comparison with a missing value is unknown, `&&`, `||`
//! and `!` follow three-valued logic, and an unknown result never matches. So
//! a null never matches, whichever way the condition is written.

use std::collections::BTreeSet;

use evalexpr::{Node, Operator, Value};

use crate::ingest::PartnersTable;

/// A parsed, checked rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Rule name (segment source `rule:<name>`).
    pub name: String,
    /// Segment name for people.
    pub segment_name: String,
    /// The condition as written.
    pub condition: String,
    tree: Node,
}

/// Why a rule is invalid.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("rule `{rule}`{}: {problem}", column.as_ref().map(|c| format!(", column `{c}`")).unwrap_or_default())]
pub struct RuleError {
    /// The rule.
    pub rule: String,
    /// The column concerned, if any.
    pub column: Option<String>,
    /// What is wrong.
    pub problem: String,
}

fn check(rule: &str, node: &Node) -> Result<(), RuleError> {
    let refuse = |problem: String| RuleError {
        rule: rule.to_string(),
        column: None,
        problem,
    };
    match node.operator() {
        Operator::RootNode | Operator::Add | Operator::Sub | Operator::Neg | Operator::Mul | Operator::Div => {}
        Operator::Eq | Operator::Neq | Operator::Gt | Operator::Lt | Operator::Geq | Operator::Leq => {}
        Operator::And | Operator::Or | Operator::Not => {}
        Operator::VariableIdentifierRead { .. } => {}
        Operator::Const { value } => match value {
            Value::Int(_) | Value::Float(_) | Value::Boolean(_) | Value::String(_) => {}
            other => return Err(refuse(format!("constant {other} is not allowed"))),
        },
        Operator::FunctionIdentifier { identifier } => {
            return Err(refuse(format!("`{identifier}(..)`: functions are not allowed in a rule (only comparisons, && || !, + - * / and column names)")));
        }
        other => return Err(refuse(format!("`{other}` is not allowed in a rule (only comparisons, && || !, + - * / and column names)"))),
    }
    let arity = match node.operator() {
        Operator::RootNode | Operator::Neg | Operator::Not => 1,
        Operator::Const { .. } | Operator::VariableIdentifierRead { .. } => 0,
        _ => 2,
    };
    if node.children().len() != arity {
        return Err(refuse(if matches!(node.operator(), Operator::RootNode) {
            "a rule is one condition, not a sequence".into()
        } else {
            format!(
                "`{}` needs {arity} operand{}",
                node.operator(),
                if arity == 1 { "" } else { "s" }
            )
        }));
    }
    node.children()
        .iter()
        .try_for_each(|child| check(rule, child))
}

impl Rule {
    /// Parses and checks a rule's condition.
    pub fn parse(name: &str, segment_name: &str, condition: &str) -> Result<Self, RuleError> {
        let tree = evalexpr::build_operator_tree(condition).map_err(|error| RuleError {
            rule: name.to_string(),
            column: None,
            problem: format!("cannot parse `{condition}`: {error}"),
        })?;
        if tree.children().is_empty() {
            return Err(RuleError {
                rule: name.to_string(),
                column: None,
                problem: "the condition is empty".into(),
            });
        }
        check(name, &tree)?;
        Ok(Self {
            name: name.to_string(),
            segment_name: segment_name.to_string(),
            condition: condition.to_string(),
            tree,
        })
    }

    /// The columns the condition reads.
    pub fn columns(&self) -> BTreeSet<String> {
        self.tree
            .iter_variable_identifiers()
            .map(str::to_string)
            .collect()
    }
}

/// A column-wise value.
#[derive(Debug, Clone)]
enum Column<'a> {
    /// Numbers (NaN: missing).
    Number(Vec<f64>),
    /// Truth values (None: unknown).
    Truth(Vec<Option<bool>>),
    /// Text (None: missing).
    Text(Vec<Option<&'a str>>),
    /// A constant number.
    ConstNumber(f64),
    /// A constant truth value.
    ConstTruth(bool),
    /// A constant text.
    ConstText(String),
}

struct Evaluator<'a> {
    rule: &'a str,
    partners: &'a PartnersTable,
    rows: usize,
}

impl<'a> Evaluator<'a> {
    fn error(&self, column: Option<&str>, problem: String) -> RuleError {
        RuleError {
            rule: self.rule.to_string(),
            column: column.map(str::to_string),
            problem,
        }
    }

    fn numbers(&self, value: Column<'a>, what: &str) -> Result<Vec<f64>, RuleError> {
        match value {
            Column::Number(values) => Ok(values),
            Column::ConstNumber(v) => Ok(vec![v; self.rows]),
            _ => Err(self.error(None, format!("{what} needs numbers"))),
        }
    }

    fn truths(&self, value: Column<'a>, what: &str) -> Result<Vec<Option<bool>>, RuleError> {
        match value {
            Column::Truth(values) => Ok(values),
            Column::ConstTruth(v) => Ok(vec![Some(v); self.rows]),
            _ => Err(self.error(
                None,
                format!("{what} needs conditions (true or false) on both sides"),
            )),
        }
    }

    fn evaluate(&self, node: &Node) -> Result<Column<'a>, RuleError> {
        let children = node.children();
        let child = |index: usize| -> Result<Column<'a>, RuleError> {
            children.get(index).map_or_else(
                || Err(self.error(None, "an operator lacks an operand".into())),
                |c| self.evaluate(c),
            )
        };
        Ok(match node.operator() {
            Operator::RootNode => child(0)?,
            Operator::Const { value } => match value {
                Value::Int(v) => Column::ConstNumber(*v as f64),
                Value::Float(v) => Column::ConstNumber(*v),
                Value::Boolean(v) => Column::ConstTruth(*v),
                Value::String(v) => Column::ConstText(v.clone()),
                other => return Err(self.error(None, format!("constant {other} is not allowed"))),
            },
            Operator::VariableIdentifierRead { identifier } => {
                if let Some(column) = self.partners.numeric.iter().find(|c| &c.name == identifier) {
                    Column::Number(column.values.clone())
                } else if self.partners.revenue.name == *identifier {
                    Column::Number(self.partners.revenue.values.clone())
                } else if let Some(column) = self
                    .partners
                    .categorical
                    .iter()
                    .find(|c| &c.name == identifier)
                {
                    Column::Text(
                        column
                            .codes
                            .iter()
                            .map(|code| code.map(|c| column.levels[c as usize].as_str()))
                            .collect(),
                    )
                } else {
                    return Err(self.error(
                        Some(identifier),
                        "no such column among the configured features (add it to features.numeric or features.categorical)".into(),
                    ));
                }
            }
            Operator::Neg => Column::Number(
                self.numbers(child(0)?, "`-`")?
                    .into_iter()
                    .map(|v| -v)
                    .collect(),
            ),
            operator @ (Operator::Add | Operator::Sub | Operator::Mul | Operator::Div) => {
                let (a, b) = (
                    self.numbers(child(0)?, "arithmetic")?,
                    self.numbers(child(1)?, "arithmetic")?,
                );
                let apply: fn(f64, f64) -> f64 = match operator {
                    Operator::Add => |x, y| x + y,
                    Operator::Sub => |x, y| x - y,
                    Operator::Mul => |x, y| x * y,
                    _ => |x, y| if y == 0.0 { f64::NAN } else { x / y },
                };
                Column::Number(a.iter().zip(&b).map(|(x, y)| apply(*x, *y)).collect())
            }
            operator @ (Operator::Eq
            | Operator::Neq
            | Operator::Gt
            | Operator::Lt
            | Operator::Geq
            | Operator::Leq) => {
                let (left, right) = (child(0)?, child(1)?);
                let equal = matches!(operator, Operator::Eq | Operator::Neq);
                let text =
                    |value: &Column<'a>| matches!(value, Column::Text(_) | Column::ConstText(_));
                if text(&left) || text(&right) {
                    if !equal {
                        return Err(
                            self.error(None, "text can only be compared with == or !=".into())
                        );
                    }
                    let as_text = |value: Column<'a>| -> Result<Vec<Option<String>>, RuleError> {
                        match value {
                            Column::Text(values) => {
                                Ok(values.into_iter().map(|v| v.map(str::to_string)).collect())
                            }
                            Column::ConstText(v) => Ok(vec![Some(v); self.rows]),
                            _ => {
                                Err(self.error(None, "text can only be compared with text".into()))
                            }
                        }
                    };
                    let (a, b) = (as_text(left)?, as_text(right)?);
                    let negate = matches!(operator, Operator::Neq);
                    Column::Truth(
                        a.iter()
                            .zip(&b)
                            .map(|(x, y)| Some((x.as_ref()? == y.as_ref()?) != negate))
                            .collect(),
                    )
                } else {
                    let (a, b) = (
                        self.numbers(left, "a comparison")?,
                        self.numbers(right, "a comparison")?,
                    );
                    let compare: fn(f64, f64) -> bool = match operator {
                        Operator::Eq => |x, y| x == y,
                        Operator::Neq => |x, y| x != y,
                        Operator::Gt => |x, y| x > y,
                        Operator::Lt => |x, y| x < y,
                        Operator::Geq => |x, y| x >= y,
                        _ => |x, y| x <= y,
                    };
                    Column::Truth(
                        a.iter()
                            .zip(&b)
                            .map(|(x, y)| (!x.is_nan() && !y.is_nan()).then(|| compare(*x, *y)))
                            .collect(),
                    )
                }
            }
            Operator::Not => Column::Truth(
                self.truths(child(0)?, "`!`")?
                    .into_iter()
                    .map(|v| v.map(|b| !b))
                    .collect(),
            ),
            operator @ (Operator::And | Operator::Or) => {
                let (a, b) = (
                    self.truths(child(0)?, "`&&` and `||`")?,
                    self.truths(child(1)?, "`&&` and `||`")?,
                );
                let and = matches!(operator, Operator::And);
                Column::Truth(
                    a.iter()
                        .zip(&b)
                        .map(|(x, y)| match (x, y, and) {
                            (Some(false), _, true) | (_, Some(false), true) => Some(false),
                            (Some(true), _, false) | (_, Some(true), false) => Some(true),
                            (Some(x), Some(y), _) => Some(if and { *x && *y } else { *x || *y }),
                            _ => None,
                        })
                        .collect(),
                )
            }
            other => return Err(self.error(None, format!("`{other}` is not allowed in a rule"))),
        })
    }
}

/// Which rule each partner matched.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleMatches {
    /// Index of the first matching rule per partner row.
    pub rule_of: Vec<Option<usize>>,
    /// Partners per rule.
    pub counts: Vec<usize>,
}

impl RuleMatches {
    /// The partner rows no rule took (those k-means clusters), in order.
    pub fn unmatched_rows(&self) -> Vec<usize> {
        (0..self.rule_of.len())
            .filter(|r| self.rule_of[*r].is_none())
            .collect()
    }
}

/// The configuration's rules, compiled and evaluated over the partners: a
/// rule that cannot be compiled or evaluated is a configuration error.
pub fn compile_and_apply(
    settings: &crate::config::RunSettings,
    partners: &PartnersTable,
) -> anyhow::Result<(Vec<Rule>, RuleMatches)> {
    // A rule the data cannot answer (a column it lacks, a comparison of
    // text with a number) is the configuration's: its key and line.
    let usage = |e: RuleError| {
        let key = settings
            .rules
            .iter()
            .position(|r| r.name == e.rule)
            .map_or_else(|| "rules".to_string(), |i| format!("rules.{i}.condition"));
        anyhow::Error::new(settings.invalid(vec![(key, e.to_string())]))
    };
    let rules = settings.compiled_rules().map_err(usage)?;
    let matches = apply(&rules, partners).map_err(usage)?;
    Ok((rules, matches))
}

/// Evaluates the rules in order over all partners.
pub fn apply(rules: &[Rule], partners: &PartnersTable) -> Result<RuleMatches, RuleError> {
    let rows = partners.ids.len();
    let mut rule_of = vec![None; rows];
    let mut counts = vec![0; rules.len()];
    for (index, rule) in rules.iter().enumerate() {
        let evaluator = Evaluator {
            rule: &rule.name,
            partners,
            rows,
        };
        let matches = match evaluator.evaluate(&rule.tree)? {
            Column::Truth(values) => values,
            Column::ConstTruth(value) => vec![Some(value); rows],
            _ => {
                return Err(evaluator.error(
                    None,
                    "the condition must be true or false (a comparison), not a number or text"
                        .into(),
                ))
            }
        };
        for (row, matched) in matches.iter().enumerate() {
            if *matched == Some(true) && rule_of[row].is_none() {
                rule_of[row] = Some(index);
                counts[index] += 1;
            }
        }
    }
    Ok(RuleMatches { rule_of, counts })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::{CategoricalColumn, NumericColumn};

    fn partners() -> PartnersTable {
        let number = |name: &str, values: Vec<f64>| NumericColumn {
            name: name.into(),
            values,
        };
        PartnersTable {
            ids: (0..5).map(|i| format!("P{i}")).collect(),
            numeric: vec![
                number("tenure_months", vec![3.0, 40.0, f64::NAN, 5.0, 80.0]),
                number("logins", vec![10.0, 0.0, 0.0, f64::NAN, 0.0]),
                number("revenue", vec![100.0, 500.0, 50.0, 10.0, 5000.0]),
            ],
            revenue: number("revenue", vec![100.0, 500.0, 50.0, 10.0, 5000.0]),
            categorical: vec![CategoricalColumn {
                name: "tier".into(),
                codes: vec![Some(0), Some(1), None, Some(0), Some(1)],
                levels: vec!["gold".into(), "silver".into()],
            }],
            files: vec![],
        }
    }

    fn run(conditions: &[&str]) -> Result<Vec<Option<usize>>, RuleError> {
        let rules: Vec<Rule> = conditions
            .iter()
            .enumerate()
            .map(|(i, c)| Rule::parse(&format!("r{i}"), "R", c))
            .collect::<Result<_, _>>()?;
        Ok(apply(&rules, &partners())?.rule_of)
    }

    #[test]
    fn rules_apply_in_order_and_the_first_match_wins() {
        let rule_of = run(&["tenure_months < 6", "logins == 0 && revenue < 1000"]).expect("valid");
        assert_eq!(rule_of, vec![Some(0), Some(1), Some(1), Some(0), None]);
    }

    #[test]
    fn a_null_never_matches_whichever_way_it_is_written() {
        // Partner 2 has no tenure, partner 3 no logins.
        assert_eq!(run(&["tenure_months >= 6"]).expect("valid")[2], None);
        assert_eq!(run(&["!(tenure_months < 6)"]).expect("valid")[2], None);
        assert_eq!(run(&["logins != 0"]).expect("valid")[3], None);
        // Three-valued logic: unknown || true is true.
        assert_eq!(
            run(&["tenure_months < 6 || revenue < 100"]).expect("valid")[2],
            Some(0)
        );
        assert_eq!(
            run(&["tier == \"gold\""]).expect("valid"),
            vec![Some(0), None, None, Some(0), None]
        );
    }

    #[test]
    fn arithmetic_and_text_work_column_wise() {
        assert_eq!(
            run(&["revenue / (tenure_months + 1) > 20"]).expect("valid"),
            vec![Some(0), None, None, None, Some(0)]
        );
        assert_eq!(
            run(&["tier != \"gold\" && logins == 0"]).expect("valid"),
            vec![None, Some(0), None, None, Some(0)]
        );
    }

    #[test]
    fn a_rule_cannot_call_functions_assign_or_chain() {
        for condition in [
            "str::from(1) == \"1\"",
            "x = 3",
            "tenure_months < 6; logins == 0",
            "math::ln(revenue) > 2",
        ] {
            let error = Rule::parse("bad", "Bad", condition).expect_err(condition);
            assert_eq!(error.rule, "bad");
        }
    }

    #[test]
    fn an_unknown_column_is_named() {
        let error = run(&["visits > 3"]).expect_err("unknown column");
        assert_eq!(error.column.as_deref(), Some("visits"));
        assert!(
            error.to_string().contains("rule `r0`, column `visits`"),
            "{error}"
        );
    }

    #[test]
    fn a_condition_must_be_a_truth_value() {
        assert!(run(&["revenue + 1"]).is_err());
        assert!(run(&["tier > \"a\""]).is_err());
        assert!(Rule::parse("syntax", "S", "tenure_months <").is_err());
    }
}
