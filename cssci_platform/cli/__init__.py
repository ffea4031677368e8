"""The `cssci` command line: commands (main), patient runs, study stages and single-patient prediction."""
