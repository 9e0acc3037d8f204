//! Checking a pipeline's graph: unique step ids, dependencies that exist, no cycles,
//! and an order to run the steps in.
//!
//! Errors name the steps involved: a missing input names the step and what it reads,
//! a cycle lists the steps around it (`a -> b -> c -> a`).

use std::collections::HashMap;

use crate::error::{Error, Result};

/// The checked graph: for each step (by index), the indices of the steps it needs
/// (data inputs first, in argument order, then ordering-only dependencies), and an
/// order in which every step comes after all it needs.
#[derive(Debug, Clone)]
pub(crate) struct Graph {
    pub(crate) needs: Vec<Vec<usize>>,
    pub(crate) inputs: Vec<Vec<usize>>,
    pub(crate) order: Vec<usize>,
    pub(crate) index: HashMap<String, usize>,
}

/// One step as the graph sees it: its id, the ids it reads from, the ids it runs after.
pub(crate) struct Node<'a> {
    pub(crate) id: &'a str,
    pub(crate) inputs: &'a [String],
    pub(crate) after: &'a [String],
}

pub(crate) fn check(pipeline: &str, nodes: &[Node<'_>]) -> Result<Graph> {
    let mut index = HashMap::with_capacity(nodes.len());
    for (i, node) in nodes.iter().enumerate() {
        if index.insert(node.id.to_string(), i).is_some() {
            return Err(Error::DuplicateStep {
                pipeline: pipeline.to_string(),
                step: node.id.to_string(),
            });
        }
    }
    let lookup = |step: &str, dep: &str| {
        index.get(dep).copied().ok_or_else(|| Error::MissingInput {
            pipeline: pipeline.to_string(),
            step: step.to_string(),
            input: dep.to_string(),
        })
    };
    let mut needs = Vec::with_capacity(nodes.len());
    let mut inputs = Vec::with_capacity(nodes.len());
    for node in nodes {
        let data: Vec<usize> = node
            .inputs
            .iter()
            .map(|dep| lookup(node.id, dep))
            .collect::<Result<_>>()?;
        let mut all = data.clone();
        for dep in node.after {
            let d = lookup(node.id, dep)?;
            if !all.contains(&d) {
                all.push(d);
            }
        }
        inputs.push(data);
        needs.push(all);
    }
    let order = topological_order(pipeline, nodes, &needs)?;
    Ok(Graph {
        needs,
        inputs,
        order,
        index,
    })
}

/// Kahn's algorithm, taking ready steps in definition order; on a cycle, finds one
/// and names its steps.
fn topological_order(
    pipeline: &str,
    nodes: &[Node<'_>],
    needs: &[Vec<usize>],
) -> Result<Vec<usize>> {
    let n = nodes.len();
    let mut missing: Vec<usize> = needs.iter().map(Vec::len).collect();
    let mut users = vec![Vec::new(); n];
    for (i, deps) in needs.iter().enumerate() {
        for &d in deps {
            users[d].push(i);
        }
    }
    let mut ready: std::collections::BTreeSet<usize> =
        (0..n).filter(|&i| missing[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &u in &users[i] {
            missing[u] -= 1;
            if missing[u] == 0 {
                ready.insert(u);
            }
        }
    }
    if order.len() == n {
        return Ok(order);
    }
    // Some steps never became ready: walk back along unmet needs until a step repeats.
    let start = (0..n).find(|&i| missing[i] > 0).unwrap_or(0);
    let mut path = vec![start];
    let mut seen = vec![usize::MAX; n];
    seen[start] = 0;
    let mut current = start;
    while let Some(&next) = needs[current].iter().find(|&&d| missing[d] > 0) {
        if seen[next] != usize::MAX {
            let cycle_start = seen[next];
            let mut steps: Vec<String> = path[cycle_start..]
                .iter()
                .rev()
                .map(|&i| nodes[i].id.to_string())
                .collect();
            steps.insert(0, nodes[next].id.to_string());
            steps.dedup();
            if steps.first() != steps.last() || steps.len() == 1 {
                steps.push(nodes[next].id.to_string());
            }
            return Err(Error::Cycle {
                pipeline: pipeline.to_string(),
                steps,
            });
        }
        seen[next] = path.len();
        path.push(next);
        current = next;
    }
    Err(Error::Cycle {
        pipeline: pipeline.to_string(),
        steps: vec![nodes[start].id.to_string()],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node<'a>(id: &'a str, inputs: &'a [String], after: &'a [String]) -> Node<'a> {
        Node { id, inputs, after }
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn orders_after_dependencies() {
        let (none, a, b) = (s(&[]), s(&["a"]), s(&["b"]));
        let nodes = [
            node("c", &b, &none),
            node("a", &none, &none),
            node("b", &a, &none),
        ];
        let g = check("p", &nodes).unwrap();
        let ids: Vec<_> = g.order.iter().map(|&i| nodes[i].id).collect();
        assert_eq!(ids, ["a", "b", "c"]);
    }

    #[test]
    fn names_the_steps_of_a_cycle() {
        let (a, b, c, none) = (s(&["a"]), s(&["b"]), s(&["c"]), s(&[]));
        let nodes = [
            node("a", &none, &c),
            node("b", &a, &none),
            node("c", &b, &none),
            node("d", &none, &none),
        ];
        let err = check("p", &nodes).unwrap_err();
        let Error::Cycle { steps, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(steps.first(), steps.last());
        assert_eq!(steps.len(), 4, "{steps:?}");
        for id in ["a", "b", "c"] {
            assert!(steps.iter().any(|s| s == id), "{err}");
        }
        assert!(err.to_string().contains("->"), "{err}");
    }

    #[test]
    fn a_self_dependency_is_a_cycle() {
        let (a, none) = (s(&["a"]), s(&[]));
        let err = check("p", &[node("a", &none, &a)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "pipeline \"p\" has a dependency cycle: a -> a"
        );
    }

    #[test]
    fn names_a_missing_input() {
        let (x, none) = (s(&["nope"]), s(&[]));
        let err = check("p", &[node("a", &none, &none), node("b", &x, &none)]).unwrap_err();
        assert!(
            matches!(&err, Error::MissingInput { step, input, .. } if step == "b" && input == "nope"),
            "{err}"
        );
    }

    #[test]
    fn refuses_duplicate_ids() {
        let none = s(&[]);
        let err = check("p", &[node("a", &none, &none), node("a", &none, &none)]).unwrap_err();
        assert!(matches!(err, Error::DuplicateStep { .. }));
    }
}
