//! Splitting a Dockerfile into stages: global `ARG`s before the first `FROM`, `FROM` lines
//! expanded with them (and the automatic platform args), stage names and which stages a
//! target needs.

use std::collections::BTreeMap;

use super::{BuildArgs, PlanError};
use crate::dockerfile::{Dockerfile, Instruction, expand_word};

type Located = crate::dockerfile::Located<Instruction>;
use crate::image::Platform;

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseSpec {
    /// `FROM scratch`: nothing.
    Scratch,
    /// An earlier stage, by index.
    Stage(usize),
    /// An image reference, expanded.
    Image(String),
}

/// One `FROM` and the instructions after it.
#[derive(Debug, Clone)]
pub struct Stage {
    /// Position in the Dockerfile, from 0.
    pub index: usize,
    /// `AS name`, lower-cased.
    pub name: Option<String>,
    /// What it starts from.
    pub base: BaseSpec,
    /// `FROM --platform=…`, expanded.
    pub platform: Option<Platform>,
    /// The `FROM` line.
    pub line: usize,
    /// The instructions after `FROM`.
    pub instructions: Vec<Located>,
}

/// All stages, and what the instructions before the first `FROM` declared.
#[derive(Debug, Clone)]
pub struct Stages {
    /// The stages in order.
    pub stages: Vec<Stage>,
    /// Global `ARG`s: name → value (build arg, else default, else none).
    pub global_args: BTreeMap<String, Option<String>>,
    /// The escape character (`# escape=`).
    pub escape: char,
}

impl Stages {
    /// The index of the stage to build: `target` by name, else the last.
    pub fn target(&self, target: Option<&str>) -> Result<usize, PlanError> {
        match target {
            None => Ok(self.stages.len().saturating_sub(1)),
            Some(t) => {
                let t = t.to_ascii_lowercase();
                self.stages
                    .iter()
                    .position(|s| s.name.as_deref() == Some(t.as_str()))
                    .ok_or(PlanError::UnknownTarget(t))
            }
        }
    }

    /// The stage `name` (case-insensitive) or `index` refers to, defined before `before`.
    pub fn lookup(&self, name: &str, before: usize) -> Option<usize> {
        let lower = name.to_ascii_lowercase();
        if let Some(i) = self.stages[..before.min(self.stages.len())]
            .iter()
            .position(|s| s.name.as_deref() == Some(lower.as_str()))
        {
            return Some(i);
        }
        name.parse::<usize>().ok().filter(|i| *i < before)
    }
}

/// Split `df` into stages. `auto` are the automatic platform args, visible to `FROM` lines.
pub fn plan_stages(
    df: &Dockerfile,
    build_args: &BuildArgs,
    auto: &BTreeMap<String, String>,
) -> Result<Stages, PlanError> {
    let escape = df.directives.escape;
    let instructions = crate::dockerfile::instructions(df)?;
    let mut global_args: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut stages: Vec<Stage> = Vec::new();
    for located in instructions {
        match &located.instruction {
            Instruction::From {
                image,
                name,
                platform,
            } => {
                let line = located.start_line;
                let lookup = |k: &str| -> Option<String> {
                    match global_args.get(k) {
                        Some(v) => v.clone(),
                        None => auto.get(k).cloned(),
                    }
                };
                let expand = |w: &str| {
                    expand_word(w, &lookup, escape).map_err(|e| PlanError::Expand {
                        line,
                        instruction: "FROM".into(),
                        message: e.to_string(),
                    })
                };
                let image = expand(image)?;
                if image.is_empty() {
                    return Err(PlanError::Invalid {
                        line,
                        instruction: "FROM".into(),
                        message: "the base image name is empty after expanding variables".into(),
                    });
                }
                let platform = match platform {
                    Some(p) => {
                        let p = expand(p)?;
                        Some(Platform::parse(&p).ok_or_else(|| PlanError::Invalid {
                            line,
                            instruction: "FROM".into(),
                            message: format!("invalid --platform {p:?}: expected os/arch[/variant], e.g. linux/amd64"),
                        })?)
                    }
                    None => None,
                };
                let tmp = Stages {
                    stages: stages.clone(),
                    global_args: BTreeMap::new(),
                    escape,
                };
                let base =
                    if image.eq_ignore_ascii_case("scratch") {
                        BaseSpec::Scratch
                    } else if let Some(i) = tmp.stages.iter().position(|s| {
                        s.name.as_deref() == Some(image.to_ascii_lowercase().as_str())
                    }) {
                        BaseSpec::Stage(i)
                    } else {
                        BaseSpec::Image(image)
                    };
                let name = name.as_ref().map(|n| n.to_ascii_lowercase());
                if let Some(n) = &name
                    && stages.iter().any(|s| s.name.as_ref() == Some(n))
                {
                    return Err(PlanError::Invalid {
                        line,
                        instruction: "FROM".into(),
                        message: format!("duplicate stage name {n:?}: stage names must be unique"),
                    });
                }
                stages.push(Stage {
                    index: stages.len(),
                    name,
                    base,
                    platform,
                    line,
                    instructions: vec![],
                });
            }
            Instruction::Arg(pairs) if stages.is_empty() => {
                for (k, default) in pairs {
                    let value = match build_args.0.get(k) {
                        Some(v) => Some(v.clone()),
                        None => match default {
                            Some(d) => {
                                let lookup = |name: &str| {
                                    global_args
                                        .get(name)
                                        .cloned()
                                        .flatten()
                                        .or_else(|| auto.get(name).cloned())
                                };
                                Some(expand_word(d, &lookup, escape).map_err(|e| {
                                    PlanError::Expand {
                                        line: located.start_line,
                                        instruction: "ARG".into(),
                                        message: e.to_string(),
                                    }
                                })?)
                            }
                            None => None,
                        },
                    };
                    global_args.insert(k.clone(), value);
                }
            }
            _ => match stages.last_mut() {
                Some(s) => s.instructions.push(located),
                None => {
                    return Err(PlanError::NoFrom {
                        line: located.start_line,
                        instruction: super::stage::keyword(&located),
                    });
                }
            },
        }
    }
    if stages.is_empty() {
        return Err(PlanError::Empty);
    }
    Ok(Stages {
        stages,
        global_args,
        escape,
    })
}
