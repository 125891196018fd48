"""AWS adapters: clients, observation of ECS/EC2/Auto Scaling, execution of plans."""
