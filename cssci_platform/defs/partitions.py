import dagster as dg

patients_partitions = dg.DynamicPartitionsDefinition(name="patients")
centers_partitions = dg.DynamicPartitionsDefinition(name="centers")
