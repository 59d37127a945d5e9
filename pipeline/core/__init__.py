"""What every stage shares: the elements that flow between stages (`records`), file access
through Beam's file systems (`fs`) and the names of the job counters (`metrics`)."""
